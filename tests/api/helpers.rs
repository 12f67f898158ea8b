//! The in-process app for the api tests: [`spawn_app`] builds pixelgate's `App` on port 0 with
//! its own data directory, so a test can flush the sink and read the records back without
//! stopping it. The real binary comes from the shared harness (`crate::common::process`); the
//! crate's own API is used here only, so a rename in `src/` touches this file alone.

use std::net::SocketAddr;
use std::time::Duration;

use pixelgate::App;
use pixelgate::config::Cli;
use pixelgate::pipeline::Dispatcher;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::common::metrics::scrape;
use crate::common::net::get_gif;
use crate::common::records::read_records;
use crate::common::user_agents::BROWSER_UA;

/// A running in-process app.
pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub data: tempfile::TempDir,
    /// Sends the browser user agent.
    pub client: reqwest::Client,
    dispatcher: Dispatcher,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Starts the app with `extra` flags on 127.0.0.1:0.
pub async fn spawn_app(extra: &[&str]) -> TestApp {
    spawn_app_on("127.0.0.1:0", extra).await
}

/// Starts the app with `extra` flags on `listen`.
pub async fn spawn_app_on(listen: &str, extra: &[&str]) -> TestApp {
    let data = tempfile::tempdir().expect("temp dir");
    let mut args = vec!["pixelgate", "--listen", listen, "--metrics-listen", "127.0.0.1:0", "--data-dir"];
    let dir = data.path().to_str().expect("utf-8 temp path").to_owned();
    args.push(&dir);
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_args(&args).expect("test flags parse");
    let app = App::build(cli.settings().expect("valid settings")).await.expect("app builds");
    let (addr, metrics_addr, dispatcher) = (app.local_addr(), app.metrics_addr(), app.dispatcher());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().user_agent(BROWSER_UA).build().expect("client");
    TestApp { addr, metrics_addr, data, client, dispatcher, stop: Some(stop), task: Some(task) }
}

impl TestApp {
    /// `http://addr` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET with the browser user agent; panics unless the GIF comes back.
    pub async fn hit(&self, path_and_query: &str) {
        get_gif(&self.client, &self.url(path_and_query)).await;
    }

    /// Every record written so far (after a flush), in file order.
    pub async fn records(&self) -> Vec<Value> {
        self.dispatcher.flush().await;
        read_records(self.data.path())
    }

    /// The one record written so far.
    pub async fn only_record(&self) -> Value {
        let mut r = self.records().await;
        assert_eq!(r.len(), 1, "expected one record: {r:#?}");
        r.remove(0)
    }

    /// The Prometheus text.
    pub async fn metrics(&self) -> String {
        scrape(self.metrics_addr).await
    }

    /// Stops the app the way a signal would and waits for it to finish.
    pub async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.expect("app task").expect("app run");
        self.data
    }
}

/// Sends raw bytes on a fresh connection and returns what came back before the server closed
/// the connection or `wait` passed.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    out
}
