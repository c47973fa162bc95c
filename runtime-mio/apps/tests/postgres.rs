//! Two `tickwire-vs` instances on one PostgreSQL database behave as one: a revocation made at
//! one is in force at the other, and a game server that fails over from one to the other
//! finds its receipts there. The test starts a throwaway PostgreSQL cluster from Debian's
//! `postgresql` package (initdb into a temporary directory, a free port, stopped at the end;
//! as root it runs as the `postgres` user, since initdb refuses root).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tickwire_apps::demo::{demo_config, run_clients, ClientOptions, DEMO_GS_ID};

mod common;

use common::*;

const TOKEN: &str = "operator-token-0123456789";

/// A throwaway PostgreSQL cluster; stopped and removed when dropped.
struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PgCluster {
    /// Starts one, or `None` (with a note) when PostgreSQL is not installed outside CI.
    fn start(name: &str) -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL is required under CI (Debian package postgresql)"
            );
            eprintln!("PostgreSQL not installed: skipping");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("tickwire-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = is_root();
        let cluster = Self {
            port: TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            dir,
            bin,
            as_postgres,
        };
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.dir));
        }
        let data = cluster.dir.join("data");
        run(cluster
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data));
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            cluster.port,
            cluster.dir.display()
        );
        run(cluster
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-o", &options, "-l"])
            .arg(cluster.dir.join("log"))
            .arg("-D")
            .arg(&data)
            .arg("start"));
        run(cluster.command("psql").args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
            "-c",
            "CREATE DATABASE tickwire",
        ]));
        Some(cluster)
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/tickwire", self.port)
    }

    /// `program` of the cluster's PostgreSQL, as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed PostgreSQL's `bin` directory.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The receipts a VS lists for the demo game server.
fn receipts(admin: SocketAddr) -> usize {
    request(
        admin,
        "GET",
        &format!("/v1/game-servers/{DEMO_GS_ID}/receipts"),
        Some(TOKEN),
    )
    .1
    .matches("\"receipt\"")
    .count()
}

#[test]
fn two_verification_servers_on_one_postgresql_behave_as_one() {
    let Some(cluster) = PgCluster::start("pair") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("tickwire-pg-files-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let issuer = dir.join("issuer.pem");
    tickwire_udp::os::generate_key_file(&issuer).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let config = dir.join("vs.toml");
    std::fs::write(
        &config,
        format!(
            "issuer_key = \"{}\"\nallow_gs_binary = [\"{GS}\"]\nstore = \"{}\"\nadmin_token_file = \"{}\"\n\
             [verifier]\nallow_unenrolled = true\nticket_interval_ms = 300\nticket_lifetime_ms = 3000\n",
            issuer.display(),
            cluster.url(),
            token.display()
        ),
    )
    .unwrap();
    let start_vs = || {
        let config = config.display().to_string();
        let vs = Process::start(
            VS,
            "tickwire-vs",
            &[
                "--config",
                &config,
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ],
        );
        let admin = vs.address_after("admin on ");
        let addr = vs.address_after("listening on ");
        (vs, admin, addr.to_string())
    };
    let (first, first_admin, first_addr) = start_vs();
    let (_second, second_admin, second_addr) = start_vs();

    // A revocation made at the first instance is in force at the second.
    assert_eq!(
        request(first_admin, "POST", "/v1/revocations/client/100", Some(TOKEN)).0,
        200
    );
    eventually("the second instance has the revocation", || {
        request(second_admin, "GET", "/v1/revocations", Some(TOKEN))
            .1
            .contains("\"client_id\":100")
    });

    // A game server attested by the first, with a client; it fails over to the second.
    let public = format!("{}.pub", issuer.display());
    let (gs, gs_admin, gs_addr) =
        Process::game_server(&public, &first_addr, &["--vs-failover", &second_addr]);
    // Until its first play ticket a game server refuses joins, and the client gives up after a
    // few quick retries: start it once the game server admits.
    eventually("the game server is admitted by the first instance", || {
        get(gs_admin, "/ready").0 == 200
    });
    let player = {
        let options = ClientOptions {
            issuer: tickwire_udp::os::load_signing_key(Path::new(&issuer)).unwrap(),
            gs_id: DEMO_GS_ID,
            config: demo_config(),
            duration: Duration::from_secs(15),
            trusted_vs: None,
        };
        std::thread::spawn(move || run_clients(gs_addr, 0, 1, &options).unwrap())
    };
    eventually("the first instance signs receipts", || receipts(first_admin) >= 2);
    eventually("the second instance knows them", || receipts(second_admin) >= 2);
    let signed_at_first = receipts(first_admin);
    drop(first); // SIGKILL
    eventually("the game server joins the second instance", || {
        request(second_admin, "GET", "/v1/game-servers", Some(TOKEN))
            .1
            .contains("\"authorised\":[{\"gs_id\":42")
    });
    assert!(receipts(second_admin) >= signed_at_first, "no receipt was lost");
    let played = player.join().unwrap();
    assert!(played[0].joined);
    assert_eq!(played[0].disconnected, None, "the session outlived the failover");
    drop(gs);
}
