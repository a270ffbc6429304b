//! Runs echo services: `demo-services user-service=127.0.0.1:9001 order-service=127.0.0.1:9003 …`

use demo_services::Echo;

#[tokio::main]
async fn main() {
    let mut running = Vec::new();
    for arg in std::env::args().skip(1) {
        let Some((name, addr)) = arg.split_once('=') else {
            eprintln!("usage: demo-services NAME=HOST:PORT …");
            std::process::exit(2);
        };
        match Echo::bind(name, addr).await {
            Ok(echo) => {
                println!("{name} listening on http://{}", echo.addr);
                running.push(echo);
            }
            Err(e) => {
                eprintln!("error: {name} cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
