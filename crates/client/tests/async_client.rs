//! The async client against a fake server on a real unix socket.

mod common;

use common::FakeServer;
use futures_util::StreamExt;
use warden_client::*;

#[tokio::test]
async fn simple_calls_and_errors() {
    let server = FakeServer::start();
    let mut client = AsyncClient::connect(&server.path).await.unwrap();
    assert_eq!(client.socket_path(), server.path);
    client.ping().await.unwrap();
    assert_eq!(client.echo("hi").await.unwrap().message, "hi");
    assert_eq!(client.list().await.unwrap().handles, ["abc", "def"]);
    let created = client.create(CreateRequest::default()).await.unwrap();
    assert_eq!(created.handle, "generated");
    let err = client
        .info(InfoRequest {
            handle: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.server_message(), Some("unknown handle"));
    // Still usable.
    let limit = client
        .limit_cpu(LimitCpuRequest {
            handle: "abc".into(),
            limit_in_shares: Some(200),
        })
        .await
        .unwrap();
    assert_eq!(limit.limit_in_shares, Some(200));
    assert_eq!(
        server.last(),
        Request::LimitCpu(LimitCpuRequest {
            handle: "abc".into(),
            limit_in_shares: Some(200),
        })
    );
}

#[tokio::test]
async fn stream_is_a_stream_of_chunks_ending_with_the_status() {
    let server = FakeServer::start();
    let mut client = AsyncClient::connect(&server.path).await.unwrap();
    let stream = client
        .run_streaming(SpawnRequest {
            handle: "abc".into(),
            script: "true".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stream.job_id(), 7);
    let chunks: Vec<StreamResponse> = stream.map(Result::unwrap).collect().await;
    assert_eq!(chunks.len(), 4);
    assert_eq!(chunks[0].data(), b"hello\n");
    assert_eq!(chunks[1].name(), "stderr");
    assert_eq!(chunks[3].exit_status, Some(3));
    client.ping().await.unwrap();

    let mut failing = client
        .stream(StreamRequest {
            handle: "abc".into(),
            job_id: 1,
        })
        .await
        .unwrap();
    let first = failing.next().await.unwrap();
    assert_eq!(first.unwrap_err().server_message(), Some("no such job"));
    assert!(failing.next().await.is_none());
    drop(failing);
    client.ping().await.unwrap();
}

#[tokio::test]
async fn abandoned_streams_and_failures_name_the_socket() {
    let server = FakeServer::start();
    let mut client = AsyncClient::connect(&server.path).await.unwrap();
    let mut stream = client
        .stream(StreamRequest {
            handle: "abc".into(),
            job_id: 7,
        })
        .await
        .unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    assert!(matches!(
        client.ping().await.unwrap_err(),
        Error::StreamAbandoned { .. }
    ));

    let mut client = AsyncClient::connect(&server.path).await.unwrap();
    let err = client
        .destroy(DestroyRequest {
            handle: "hangup".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Closed { .. }), "{err}");

    let missing = server.path.with_file_name("absent.sock");
    let err = AsyncClient::connect(&missing).await.unwrap_err();
    assert!(err.to_string().contains(&missing.display().to_string()));
}
