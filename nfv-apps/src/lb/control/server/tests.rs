//! The control server's limits, with real Unix sockets in a temporary directory (no root).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::*;
use crate::lb::registry::Changes;

fn socket_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("fp-control-{}-{name}.sock", std::process::id()))
}

/// Status answers ok; reload fails, as a handler's error would.
fn handler(request: Request) -> Response {
    match request {
        Request::Status => Response::changes(Changes::default()),
        Request::Reload => Response::error("reload: nothing to reload"),
        Request::Backend { .. } => Response::error("no backends here"),
    }
}

/// Runs the server's loop until `clients` finishes, calling `each` after every round;
/// returns the clients' result and the log lines.
fn serve_until<T>(
    server: &mut ControlServer,
    clients: JoinHandle<T>,
    mut each: impl FnMut(&ControlServer),
) -> (T, Vec<String>) {
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !clients.is_finished() {
        assert!(Instant::now() < deadline, "the clients never finished");
        server
            .poll(Duration::from_millis(5), &mut handler, &mut |line| {
                log.push(line)
            })
            .unwrap();
        each(server);
    }
    (clients.join().unwrap(), log)
}

/// Connects, sends `request` as is, and reads one response line (None if there was none).
fn ask(path: &PathBuf, request: &[u8]) -> Option<serde_json::Value> {
    let mut stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // A refusal may come, and the socket close, before the request is all written.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    read_response(&stream)
}

fn read_response(stream: &UnixStream) -> Option<serde_json::Value> {
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    (!line.is_empty()).then(|| serde_json::from_str(&line).unwrap())
}

fn error_of(response: &serde_json::Value) -> String {
    assert_eq!(response["ok"], false, "{response}");
    response["error"].as_str().unwrap().to_string()
}

#[test]
fn every_bad_request_gets_an_error_and_a_good_one_an_answer() {
    let path = socket_path("bad");
    let mut server = ControlServer::bind(&path, Limits::default()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let client_path = path.clone();
    let clients = std::thread::spawn(move || {
        let cases: [&[u8]; 7] = [
            b"hello\n",
            b"{\"command\":\"launch\"}\n",
            b"\n",
            b"\xff\xfe\xfd\n",
            b"[1, 2, 3]\n",
            b"{\"command\":\"backend\",\"action\":\"add\"}\n",
            b"{\"command\":\"status\"",
        ];
        let errors: Vec<String> = cases
            .iter()
            .map(|case| error_of(&ask(&client_path, case).expect("a response")))
            .collect();
        let good = ask(&client_path, b"{\"command\":\"status\"}\n").unwrap();
        let handler_error = ask(&client_path, b"{\"command\":\"reload\"}\n").unwrap();
        // Connected and left without a word: nothing to answer, nothing breaks.
        drop(UnixStream::connect(&client_path).unwrap());
        (errors, good, handler_error)
    });
    let ((errors, good, handler_error), _) = serve_until(&mut server, clients, |_| {});
    for error in &errors[..6] {
        assert!(error.starts_with("bad request: "), "{error}");
    }
    assert!(errors[2].contains("empty line"), "{}", errors[2]);
    assert!(errors[3].contains("not UTF-8"), "{}", errors[3]);
    assert!(
        errors[1].contains("unknown variant `launch`"),
        "{}",
        errors[1]
    );
    // No newline, then the end of the stream: the line is parsed as it stands.
    assert!(errors[6].contains("EOF while parsing"), "{}", errors[6]);
    assert_eq!(good["ok"], true, "{good}");
    assert_eq!(error_of(&handler_error), "reload: nothing to reload");
    drop(server);
    assert!(!path.exists(), "the socket file goes with the server");
}

#[test]
fn a_10_mb_line_gets_an_error_naming_the_limit_and_is_never_held() {
    let path = socket_path("long");
    let mut server = ControlServer::bind(&path, Limits::default()).unwrap();
    let client_path = path.clone();
    let clients = std::thread::spawn(move || {
        let stream = UnixStream::connect(&client_path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        // The server stops reading at the limit and closes: this write fails part way.
        let sender = std::thread::spawn(move || {
            let line = vec![b'x'; 10 << 20];
            writer.write_all(&line).is_ok()
        });
        let response = read_response(&stream);
        (response, sender.join().unwrap())
    });
    let mut largest = 0;
    let ((response, sent_all), _) = serve_until(&mut server, clients, |server| {
        largest = largest.max(server.largest_buffer())
    });
    let error = error_of(&response.expect("a response"));
    assert_eq!(
        error,
        "request too long: a request line may hold at most 65536 bytes"
    );
    assert!(!sent_all, "the server should close before taking 10 MB");
    assert!(largest <= 65537, "held {largest} bytes of one request");
}

#[test]
fn a_silent_client_stalls_no_one_and_times_out_with_an_error() {
    let path = socket_path("silent");
    let limits = Limits {
        timeout: Duration::from_secs(3),
        ..Limits::default()
    };
    let mut server = ControlServer::bind(&path, limits).unwrap();
    let silent = UnixStream::connect(&path).unwrap();
    // The server takes the silent client in before the others come.
    while server.clients() == 0 {
        server
            .poll(Duration::from_millis(5), &mut handler, &mut |_| {})
            .unwrap();
    }
    let client_path = path.clone();
    let others =
        std::thread::spawn(move || ask(&client_path, b"{\"command\":\"status\"}\n").unwrap());
    let (answer, _) = serve_until(&mut server, others, |_| {});
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(server.clients(), 1, "the silent client is still waiting");
    let silent_thread = std::thread::spawn(move || {
        silent
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        read_response(&silent)
    });
    let (response, log) = serve_until(&mut server, silent_thread, |_| {});
    let error = error_of(&response.expect("the silent client gets an error"));
    assert_eq!(error, "timed out: no complete request line within 3s");
    assert!(
        log.iter().any(|line| line.contains("no complete request")),
        "{log:?}"
    );
    assert_eq!(server.clients(), 0);
}

#[test]
fn two_hundred_concurrent_clients_all_get_answers_beside_fifty_silent_ones() {
    let path = socket_path("many");
    let mut server = ControlServer::bind(&path, Limits::default()).unwrap();
    let silent: Vec<UnixStream> = (0..50)
        .map(|_| UnixStream::connect(&path).unwrap())
        .collect();
    let client_path = path.clone();
    let go = Arc::new(AtomicBool::new(false));
    let clients = {
        let go = go.clone();
        std::thread::spawn(move || {
            let threads: Vec<_> = (0..200)
                .map(|_| {
                    let path = client_path.clone();
                    let go = go.clone();
                    std::thread::spawn(move || {
                        while !go.load(Ordering::Relaxed) {
                            std::thread::yield_now();
                        }
                        ask(&path, b"{\"command\":\"status\"}\n")
                    })
                })
                .collect();
            go.store(true, Ordering::Relaxed);
            threads
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect::<Vec<_>>()
        })
    };
    let mut most = 0;
    let (answers, _) = serve_until(&mut server, clients, |server| {
        most = most.max(server.clients())
    });
    assert_eq!(answers.len(), 200);
    for answer in &answers {
        let answer = answer.as_ref().expect("every client gets a response");
        assert_eq!(answer["ok"], true, "{answer}");
    }
    assert!(
        most > 50,
        "clients were served side by side ({most} at most)"
    );
    drop(silent);
}

#[test]
fn a_client_past_the_limit_is_told_to_retry() {
    let path = socket_path("busy");
    let limits = Limits {
        max_clients: 2,
        ..Limits::default()
    };
    let mut server = ControlServer::bind(&path, limits).unwrap();
    let _first = UnixStream::connect(&path).unwrap();
    let _second = UnixStream::connect(&path).unwrap();
    while server.clients() < 2 {
        server
            .poll(Duration::from_millis(5), &mut handler, &mut |_| {})
            .unwrap();
    }
    let client_path = path.clone();
    let third =
        std::thread::spawn(move || ask(&client_path, b"{\"command\":\"status\"}\n").unwrap());
    let (answer, log) = serve_until(&mut server, third, |_| {});
    assert_eq!(
        error_of(&answer),
        "busy: 2 control clients are being served (the limit); retry shortly"
    );
    assert!(log.iter().any(|line| line.contains("retry")), "{log:?}");
}

#[test]
fn a_client_gone_before_its_answer_breaks_nothing() {
    let path = socket_path("gone");
    let mut server = ControlServer::bind(&path, Limits::default()).unwrap();
    let client_path = path.clone();
    let clients = std::thread::spawn(move || {
        for _ in 0..20 {
            let mut stream = UnixStream::connect(&client_path).unwrap();
            stream.write_all(b"{\"command\":\"status\"}\n").unwrap();
        }
        ask(&client_path, b"{\"command\":\"status\"}\n").unwrap()
    });
    let (answer, _) = serve_until(&mut server, clients, |_| {});
    assert_eq!(answer["ok"], true);
}

#[test]
fn a_second_server_on_a_live_socket_is_refused_and_a_dead_ones_file_is_reused() {
    let path = socket_path("twice");
    let server = ControlServer::bind(&path, Limits::default()).unwrap();
    match ControlServer::bind(&path, Limits::default()) {
        Err(ControlError::InUse(at)) => assert_eq!(at, path),
        other => panic!("expected InUse, got {:?}", other.err()),
    }
    drop(server);
    // A socket file whose listener is gone (a killed appliance's) is taken over.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let _server = ControlServer::bind(&path, Limits::default()).unwrap();
}

#[test]
fn only_root_and_the_owner_may_ask() {
    assert!(peer_allowed(0, 1000));
    assert!(peer_allowed(1000, 1000));
    assert!(peer_allowed(0, 0));
    assert!(!peer_allowed(1000, 0));
    assert!(!peer_allowed(65534, 1000));
}

#[test]
fn request_lines_parse_or_say_why_not() {
    assert!(matches!(
        parse_request(b" {\"command\":\"reload\"} \r"),
        Ok(Request::Reload)
    ));
    assert!(
        parse_request(b"{}")
            .unwrap_err()
            .contains("missing field `command`")
    );
}
