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
 *
 * A module for the TC hooks (tcx ingress or egress, where outgoing packets are seen too)
 * defines FASTPATH_HOOK_TC before including this header, is one SEC("classifier")
 * program taking a `struct __sk_buff *`, declares no frags, and is loaded with
 * `--hook tc-ingress` or `--hook tc-egress`. Its verdicts are the same calls, returning TC
 * actions; tx, xsk and forward are XDP's only.
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

/* The head of the kernel's struct __sk_buff (include/uapi/linux/bpf.h), the context of a
 * TC module: the fields up to the packet's bounds, at their offsets. */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
};

/* The hook's context and return codes: XDP actions, or tcx ones (TCX_NEXT lets the packet
 * go on as if no program ran; TCX_PASS ends the hook's programs and passes it). */
#ifdef FASTPATH_HOOK_TC
#define FP_CTX struct __sk_buff
#define FP_ACT_CHAIN_END (-1) /* TCX_NEXT */
#define FP_ACT_PASS 0         /* TCX_PASS */
#define FP_ACT_DROP 2         /* TCX_DROP */
#define FP_ACT_ABORTED 2      /* TC has no aborted: dropped, and counted as aborted */
#else
#define FP_CTX struct xdp_md
#define FP_ACT_CHAIN_END XDP_PASS
#define FP_ACT_PASS XDP_PASS
#define FP_ACT_DROP XDP_DROP
#define FP_ACT_ABORTED XDP_ABORTED
#endif

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
	__u32 stamp;          /* profiling: see fp_count */
	__u8 scratch[FASTPATH_SCRATCH_LEN];
};
_Static_assert(sizeof(struct fp_context) == 108, "fp_context is ABI 1");

/* A port of FP_PORTS: the kernel's struct bpf_devmap_val (an ifindex, and a program to
 * run on the way out, 0 for none). */
struct fp_port {
	__u32 ifindex;
	__u32 prog;
};

/* A module's time while the chain is profiled (per CPU, in FP_RUNTIME). */
struct fp_runtime {
	__u64 ns;
	__u64 packets;
};
_Static_assert(sizeof(struct fp_runtime) == 16, "fp_runtime is ABI 1");

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
	_Static_assert(sizeof(module_name) <= FASTPATH_NAME_LEN,                             \
		       "a module name is at most 31 bytes");                                 \
	_Static_assert(sizeof(module_version) <= FASTPATH_NAME_LEN,                          \
		       "a module version is at most 31 bytes");                              \
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
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_tail_call)(void *ctx, void *prog_array_map, __u32 index) = (void *)12;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

/* The maps the chain shares with its modules, bound by name to the chain's pinned ones. */
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
	__type(value, struct fp_port);
} FP_PORTS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FASTPATH_MAX_MODULES);
	__type(key, __u32);
	__type(value, struct fp_runtime);
} FP_RUNTIME SEC(".maps");

/* This module's own link to the next module: entry b holds the program after this one in
 * revision bank b (empty for the last). Not shared: the loader wires it when it builds a
 * revision. A constant key per call site lets the kernel's JIT make each hop a direct
 * jump, where a key read from the context costs an indirect jump (a retpoline on most
 * x86 hosts). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, FASTPATH_REVISION_BANKS);
	__type(key, __u32);
	__type(value, __u32);
} FP_NEXT SEC(".maps");

/* bpf_tail_call with `key` kept as an immediate in r3: the compiler may not merge two call
 * sites into one with a computed key, which would lose the direct jump. */
#define fp_tail_call_constant(ctx, map, key)                                                 \
	asm volatile("r1 = %[c]\n\t"                                                       \
		     "r2 = %[m]\n\t"                                                       \
		     "r3 = %[k]\n\t"                                                       \
		     "call 12"                                                               \
		     :                                                                       \
		     : [c] "r"(ctx), [m] "r"(map), [k] "i"(key)                               \
		     : "r0", "r1", "r2", "r3", "r4", "r5")

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
	__u32 module = *instance - 1;
	__u32 index = module * FP_VERDICT_COUNT + verdict;
	__u64 *counter = bpf_map_lookup_elem(&FP_VERDICTS, &index);
	if (counter)
		*counter += 1;
	/* Profiling (stamp set by the entry): the time since the packet was handed over. */
	if (fp->stamp) {
		__u32 now = (__u32)bpf_ktime_get_ns() | 1;
		struct fp_runtime *spent = bpf_map_lookup_elem(&FP_RUNTIME, &module);
		if (spent) {
			spent->ns += (__u32)(now - fp->stamp);
			spent->packets += 1;
		}
		fp->stamp = now;
	}
}

FP_INLINE int fp_chain_end(void)
{
	__u32 index = FP_CHAIN_END;
	__u64 *counter = bpf_map_lookup_elem(&FP_CHAIN_COUNTERS, &index);
	if (counter)
		*counter += 1;
	return FP_ACT_CHAIN_END;
}

/* Verdicts: return the result from the module's program. */

/* Hand the packet to the next module; past the last one, the chain passes it. */
FP_INLINE int fp_continue(FP_CTX *ctx, struct fp_context *fp)
{
	fp_count(fp, FP_VERDICT_CONTINUE);
	__u32 slot = fp->slot;
	fp->slot = slot + 1;
	if (slot < FASTPATH_CHAIN_SLOTS)
		fp_tail_call_constant(ctx, &FP_NEXT, 0);
	else
		fp_tail_call_constant(ctx, &FP_NEXT, 1);
	/* Past the last module of the revision (its FP_NEXT entry is empty). */
	return fp_chain_end();
}

FP_INLINE int fp_drop(struct fp_context *fp)
{
	fp_count(fp, FP_VERDICT_DROP);
	return FP_ACT_DROP;
}

FP_INLINE int fp_pass(struct fp_context *fp)
{
	fp_count(fp, FP_VERDICT_PASS);
	return FP_ACT_PASS;
}

/* Out of another interface (XDP), or out of (or into, with BPF_F_INGRESS in `flags`) one
 * at TC: bpf_redirect's own contract. */
FP_INLINE int fp_redirect_flags(struct fp_context *fp, __u32 ifindex, __u64 flags)
{
	fp_count(fp, FP_VERDICT_REDIRECT);
	return bpf_redirect(ifindex, flags);
}

FP_INLINE int fp_redirect(struct fp_context *fp, __u32 ifindex)
{
	return fp_redirect_flags(fp, ifindex, 0);
}

FP_INLINE int fp_abort(struct fp_context *fp)
{
	fp_count(fp, FP_VERDICT_ABORTED);
	return FP_ACT_ABORTED;
}

#ifndef FASTPATH_HOOK_TC
/* Back out of the ingress interface (the module rewrites the headers first). */
FP_INLINE int fp_tx(struct fp_context *fp)
{
	fp_count(fp, FP_VERDICT_TX);
	return XDP_TX;
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
#endif

#endif /* FASTPATH_MODULE_H */
