/* fastpath IO module SDK for C, ABI version 1.
 *
 * The same ABI as the Rust SDK (sdk/rust) and offload-common's `module` (the source of
 * truth): the per-packet context the chain's entry fills, the verdicts, the module
 * metadata and the maps the chain shares with its modules. Self-contained (no libbpf or
 * kernel headers needed): build with
 *
 *     clang -O2 -g -target bpf -c my_module.c -o my_module.o
 *
 * A module is one XDP program (SEC("xdp.frags") when it declares frags, else SEC("xdp"))
 * plus FASTPATH_MODULE(name, version, frags). Load it with
 * `fastpath module load --iface IF my_module.o`.
 */
#ifndef FASTPATH_MODULE_H
#define FASTPATH_MODULE_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define FASTPATH_ABI_VERSION 1
#define FASTPATH_CHAIN_SLOTS 32
#define FASTPATH_REVISION_BANKS 2
#define FASTPATH_CHAIN_ARRAY_SLOTS (FASTPATH_CHAIN_SLOTS * FASTPATH_REVISION_BANKS)
#define FASTPATH_MAX_MODULES 64
#define FASTPATH_SCRATCH_LEN 32
#define FASTPATH_NAME_LEN 32
#define FASTPATH_MAX_PORTS 64
#define FASTPATH_MAX_XSK_QUEUES 256

/* Verdicts: the index of each module's verdict counters. */
#define FP_VERDICT_CONTINUE 0
#define FP_VERDICT_DROP 1
#define FP_VERDICT_PASS 2
#define FP_VERDICT_TX 3
#define FP_VERDICT_REDIRECT 4
#define FP_VERDICT_XSK 5
#define FP_VERDICT_FORWARD 6
#define FP_VERDICT_ABORTED 7
#define FP_VERDICT_COUNT 8

/* Counters of packets the chain ended itself. */
#define FP_CHAIN_EMPTY 0
#define FP_CHAIN_END 1
#define FP_CHAIN_NO_CONTEXT 2
#define FP_CHAIN_COUNTERS_LEN 4

/* fp_context.parse */
#define FP_PARSE_IP 0
#define FP_PARSE_NOT_IP 1
#define FP_PARSE_MALFORMED 2

/* XDP actions (include/uapi/linux/bpf.h). */
#define XDP_ABORTED 0
#define XDP_DROP 1
#define XDP_PASS 2
#define XDP_TX 3
#define XDP_REDIRECT 4

/* Map types and flags used below (include/uapi/linux/bpf.h). */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PROG_ARRAY 3
#define BPF_MAP_TYPE_PERCPU_HASH 5
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_DEVMAP 14
#define BPF_MAP_TYPE_XSKMAP 17
#define BPF_ANY 0

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

/* The per-packet context, filled once by the chain's entry (offload_common::module::ModuleContext). */
struct fp_context {
	__u16 abi_version;
	__u16 slot;          /* the running module's slot in FP_CHAIN */
	__u32 revision;
	__u16 l2_offset;
	__u16 l3_offset;
	__u16 l4_offset;
	__u8 parse;          /* FP_PARSE_* */
	__u8 vlan_count;
	__u16 vlan_tci[2];   /* outer first, host byte order */
	__u8 ip_version;     /* 4, 6, or 0 when not IP */
	__u8 protocol;
	__u8 has_ports;
	__u8 fragment;       /* 0 none, 1 first, 2 later */
	__u16 src_port;      /* host byte order */
	__u16 dst_port;
	__u8 src_addr[16];   /* network byte order; IPv4 in the first 4 bytes */
	__u8 dst_addr[16];
	__u32 ingress_ifindex;
	__u32 rx_queue;
	__u32 ingress_port;
	__u32 _pad;
	__u8 scratch[FASTPATH_SCRATCH_LEN];
};
_Static_assert(sizeof(struct fp_context) == 108, "fp_context is ABI 1");

struct fp_module_meta {
	char magic[8];
	__u32 abi_version;
	__u32 flags;         /* 1: handles multi-buffer frames (xdp.frags) */
	char name[FASTPATH_NAME_LEN];
	char version[FASTPATH_NAME_LEN];
};
_Static_assert(sizeof(struct fp_module_meta) == 80, "fp_module_meta is ABI 1");

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define FP_INLINE static inline __attribute__((always_inline))

/* The module's metadata, read by fastpath without loading the object. */
#define FASTPATH_MODULE(module_name, module_version, frags)                                  \
	const struct fp_module_meta fastpath_module_meta                                     \
		__attribute__((section(".fastpath.module"), used)) = {                       \
			.magic = "FPMODULE",                                                 \
			.abi_version = FASTPATH_ABI_VERSION,                                 \
			.flags = (frags) ? 1 : 0,                                            \
			.name = module_name,                                                 \
			.version = module_version,                                           \
	};                                                                                   \
	char _license[] SEC("license") = "GPL"

/* Helpers (include/uapi/linux/bpf.h, by number). */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
				   __u64 flags) = (void *)2;
static long (*bpf_tail_call)(void *ctx, void *prog_array_map, __u32 index) = (void *)12;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

/* The maps the chain shares with its modules, bound by name to the chain's pinned ones. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, FASTPATH_CHAIN_ARRAY_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} FP_CHAIN SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_context);
} FP_CONTEXT SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FASTPATH_CHAIN_ARRAY_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} FP_SLOT_INSTANCE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FASTPATH_MAX_MODULES * FP_VERDICT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} FP_VERDICTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FP_CHAIN_COUNTERS_LEN);
	__type(key, __u32);
	__type(value, __u64);
} FP_CHAIN_COUNTERS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, FASTPATH_MAX_XSK_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} FP_XSKS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, FASTPATH_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} FP_PORTS SEC(".maps");

/* The packet's context; NULL only if the chain is broken (then pass the packet). */
FP_INLINE struct fp_context *fp_context(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&FP_CONTEXT, &zero);
}

FP_INLINE void fp_count(struct fp_context *fp, __u32 verdict)
{
	__u32 slot = fp->slot;
	__u32 *instance = bpf_map_lookup_elem(&FP_SLOT_INSTANCE, &slot);
	if (!instance || *instance == 0)
		return;
	__u32 index = (*instance - 1) * FP_VERDICT_COUNT + verdict;
	__u64 *counter = bpf_map_lookup_elem(&FP_VERDICTS, &index);
	if (counter)
		*counter += 1;
}

FP_INLINE int fp_chain_end(void)
{
	__u32 index = FP_CHAIN_END;
	__u64 *counter = bpf_map_lookup_elem(&FP_CHAIN_COUNTERS, &index);
	if (counter)
		*counter += 1;
	return XDP_PASS;
}

/* Tail call to `slot` with one call site per slot, each with a constant key: the verifier
 * records the key and the x86 JIT makes the call a direct jump, patched when the slot
 * changes (emit_bpf_tail_call_direct, arch/x86/net/bpf_jit_comp.c), where a key known only
 * at run time is an indirect jump, a retpoline on CPUs with Spectre v2 mitigations. The
 * empty asm after each call, with its own operand, keeps clang from merging the calls. */
#define FP__TAIL(n)                                  \
	case n:                                      \
		bpf_tail_call(ctx, &FP_CHAIN, n);    \
		asm volatile("" ::"i"(n));           \
		break;
#define FP__TAIL8(n)                                                                   \
	FP__TAIL(n) FP__TAIL(n + 1) FP__TAIL(n + 2) FP__TAIL(n + 3) FP__TAIL(n + 4)   \
	FP__TAIL(n + 5) FP__TAIL(n + 6) FP__TAIL(n + 7)
_Static_assert(FASTPATH_CHAIN_ARRAY_SLOTS == 64, "fp__tail_call names every slot");
FP_INLINE void fp__tail_call(struct xdp_md *ctx, __u32 slot)
{
	switch (slot) {
	FP__TAIL8(0) FP__TAIL8(8) FP__TAIL8(16) FP__TAIL8(24)
	FP__TAIL8(32) FP__TAIL8(40) FP__TAIL8(48) FP__TAIL8(56)
	}
}

/* Verdicts: return the result from the module's program. */

/* Hand the packet to the next module; past the last one, the chain passes it. */
FP_INLINE int fp_continue(struct xdp_md *ctx, struct fp_context *fp)
{
	fp_count(fp, FP_VERDICT_CONTINUE);
	__u32 next = fp->slot + 1;
	/* The last slot of a revision's bank: the next one belongs to another revision. */
	if (next % FASTPATH_CHAIN_SLOTS != 0) {
		fp->slot = next;
		fp__tail_call(ctx, next);
	}
	return fp_chain_end();
}

FP_INLINE int fp_drop(struct fp_context *fp)
{
	fp_count(fp, FP_VERDICT_DROP);
	return XDP_DROP;
}

FP_INLINE int fp_pass(struct fp_context *fp)
{
	fp_count(fp, FP_VERDICT_PASS);
	return XDP_PASS;
}

/* Back out of the ingress interface (the module rewrites the headers first). */
FP_INLINE int fp_tx(struct fp_context *fp)
{
	fp_count(fp, FP_VERDICT_TX);
	return XDP_TX;
}

FP_INLINE int fp_redirect(struct fp_context *fp, __u32 ifindex)
{
	fp_count(fp, FP_VERDICT_REDIRECT);
	return bpf_redirect(ifindex, 0);
}

/* To the AF_XDP socket of the RX queue; passed when none is bound there. */
FP_INLINE int fp_xsk(struct fp_context *fp)
{
	int action = bpf_redirect_map(&FP_XSKS, fp->rx_queue, XDP_PASS);
	fp_count(fp, action == XDP_REDIRECT ? FP_VERDICT_XSK : FP_VERDICT_PASS);
	return action;
}

/* To the interface behind a port; passed when the port is not connected. */
FP_INLINE int fp_forward(struct fp_context *fp, __u32 port)
{
	int action = bpf_redirect_map(&FP_PORTS, port, XDP_PASS);
	fp_count(fp, action == XDP_REDIRECT ? FP_VERDICT_FORWARD : FP_VERDICT_PASS);
	return action;
}

FP_INLINE int fp_abort(struct fp_context *fp)
{
	fp_count(fp, FP_VERDICT_ABORTED);
	return XDP_ABORTED;
}

#endif /* FASTPATH_MODULE_H */
