//! A real PostgreSQL (Debian's postgresql 15) and a real Apache (Debian's apache2 with
//! mod_status) for the end-to-end tests, each in its own temp dir on a free loopback port.
//! PostgreSQL refuses to run as root: it runs as the `postgres` user. Both are installed by
//! tests/setup.sh.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::servers::free_port;
use crate::{TempDir, wait_until};

/// Where Debian's PostgreSQL binaries are: the newest `/usr/lib/postgresql/<major>/bin`.
pub fn pg_bin_dir() -> PathBuf {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    let v = versions.last().unwrap_or_else(|| {
        panic!("PostgreSQL is not installed: run tests/setup.sh (Debian's postgresql)")
    });
    PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"))
}

/// uid and gid of a user, from /etc/passwd.
fn user_ids(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .unwrap_or_else(|| panic!("no user {name}: run tests/setup.sh (it installs postgresql)"))
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
}

/// Runs a command to completion, panicking with its output when it fails.
fn check(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The password of the `postgres` role (TCP connections need it; the Unix socket trusts).
pub const PG_PASSWORD: &str = "Sup3r-Secret-pw";

/// Certificates made for a TLS test: a CA, and a server certificate it signed for
/// `localhost` and 127.0.0.1.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Another CA, which did not sign the server's certificate.
    pub other_ca: PathBuf,
}

/// Makes a CA and a server certificate with the openssl command-line tool.
pub fn make_certs(dir: &Path) -> Certs {
    let run = |args: &[&str]| {
        check(
            Command::new("openssl").args(args).current_dir(dir),
            &format!("openssl {}", args.join(" ")),
        );
    };
    for ca in ["ca", "other-ca"] {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN=sonde test {ca}"),
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        other_ca: dir.join("other-ca.pem"),
    }
}

/// A PostgreSQL server of its own: data dir, Unix socket dir and certificates in a temp dir,
/// listening on 127.0.0.1 at a free port with TLS on. Stopped (fast shutdown) when dropped.
pub struct Postgres {
    pub dir: TempDir,
    pub port: u16,
    pub certs: Certs,
    child: Option<Child>,
    bin: PathBuf,
    uid: u32,
    gid: u32,
}

impl Postgres {
    /// initdb, then start. Roles: `postgres` (password [`PG_PASSWORD`] over TCP, trusted on the
    /// socket) and `tls_only` (same password, only over TLS, member of pg_monitor).
    pub fn start() -> Postgres {
        let bin = pg_bin_dir();
        let (uid, gid) = user_ids("postgres");
        let dir = TempDir::new("postgres");
        // The temp dir's parents are root's; postgres must be able to enter its own.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        chown(dir.path(), uid, gid);
        let certs = make_certs(dir.path());
        for f in [&certs.key, &certs.cert] {
            chown(f, uid, gid);
        }
        std::fs::set_permissions(
            &certs.key,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let pwfile = dir.write("pw", PG_PASSWORD);
        chown(&pwfile, uid, gid);
        let sock = dir.join("sock");
        std::fs::create_dir(&sock).unwrap();
        chown(&sock, uid, gid);
        let data = dir.join("data");
        check(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["-E", "UTF8", "--locale=C.UTF-8"])
                .uid(uid)
                .gid(gid)
                .current_dir(dir.path()),
            "initdb",
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all tls_only 127.0.0.1/32 scram-sha-256\n\
             host all postgres 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let port = free_port();
        let mut pg = Postgres {
            dir,
            port,
            certs,
            child: None,
            bin,
            uid,
            gid,
        };
        pg.run();
        pg.psql(
            "postgres",
            &format!("CREATE ROLE tls_only LOGIN PASSWORD '{PG_PASSWORD}' IN ROLE pg_monitor"),
        );
        pg.psql("postgres", "CREATE DATABASE app");
        pg
    }

    /// The Unix socket directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Starts the server (again) on the same data dir and port; waits until it answers.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .unwrap();
        let child = Command::new(self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.socket_dir())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", self.certs.cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", self.certs.key.display()))
            // No background activity that would move the counters under a comparison.
            .args(["-c", "autovacuum=off", "-c", "fsync=off"])
            .uid(self.uid)
            .gid(self.gid)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let ready = wait_until(Duration::from_secs(30), || {
            Command::new(self.bin.join("pg_isready"))
                .arg("-h")
                .arg(self.socket_dir())
                .arg("-p")
                .arg(self.port.to_string())
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(ready, "postgres did not start; log:\n{}", self.log());
    }

    /// Fast shutdown (SIGINT), waiting for the server to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let exited = wait_until(Duration::from_secs(20), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !exited {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Runs SQL with psql over the Unix socket as `postgres`; returns the unaligned,
    /// tuples-only output (`|`-separated columns, one row a line).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        check(
            Command::new(self.bin.join("psql"))
                .arg("-h")
                .arg(self.socket_dir())
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
                .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]),
            &format!("psql {sql}"),
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Apache httpd with mod_status on 127.0.0.1 at a free port: `/server-status` open,
/// `/private-status` behind basic auth (user `monitor`, password [`APACHE_PASSWORD`]), and a
/// static `/hello.txt`; the same over HTTPS (mod_ssl, a certificate for 127.0.0.1 from
/// [`Apache::certs`]' CA, a TLS session cache) on a second port. Runs in the foreground with
/// its own ServerRoot; killed when dropped.
pub struct Apache {
    pub dir: TempDir,
    pub port: u16,
    pub https_port: u16,
    pub certs: Certs,
    child: Child,
}

pub const APACHE_PASSWORD: &str = "st4tus-pw";

impl Apache {
    pub fn start() -> Apache {
        let httpd = "/usr/sbin/apache2";
        assert!(
            Path::new(httpd).exists(),
            "apache2 is not installed: run tests/setup.sh"
        );
        let modules = "/usr/lib/apache2/modules";
        let dir = TempDir::new("apache");
        let port = free_port();
        let https_port = free_port();
        let certs = make_certs(dir.path());
        let (cert, key) = (certs.cert.display(), certs.key.display());
        let root = dir.path().display().to_string();
        std::fs::create_dir(dir.join("htdocs")).unwrap();
        dir.write("htdocs/hello.txt", "hello\n");
        let hash = check(
            Command::new("openssl").args(["passwd", "-apr1", APACHE_PASSWORD]),
            "openssl passwd",
        );
        dir.write("htpasswd", &format!("monitor:{}\n", hash.trim()));
        // Apache refuses to start as root unless told whom to run children as; -X keeps a
        // single process, so the User only matters for what it would switch to.
        let conf = format!(
            r#"ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{root}/httpd.pid"
ErrorLog "{root}/error.log"
LogLevel warn
User www-data
Group www-data
Mutex file:{root} default
DefaultRuntimeDir "{root}"
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authz_user_module {modules}/mod_authz_user.so
LoadModule authn_core_module {modules}/mod_authn_core.so
LoadModule authn_file_module {modules}/mod_authn_file.so
LoadModule auth_basic_module {modules}/mod_auth_basic.so
LoadModule status_module {modules}/mod_status.so
LoadModule socache_shmcb_module {modules}/mod_socache_shmcb.so
LoadModule ssl_module {modules}/mod_ssl.so
ExtendedStatus On
SSLSessionCache "shmcb:{root}/ssl_scache(512000)"
Listen 127.0.0.1:{https_port}
<VirtualHost 127.0.0.1:{https_port}>
  SSLEngine on
  SSLCertificateFile "{cert}"
  SSLCertificateKeyFile "{key}"
</VirtualHost>
ServerLimit 2
ThreadLimit 5
ThreadsPerChild 5
MaxRequestWorkers 10
StartServers 1
DocumentRoot "{root}/htdocs"
<Directory "{root}/htdocs">
  Require all granted
</Directory>
<Location "/server-status">
  SetHandler server-status
  Require all granted
</Location>
<Location "/private-status">
  SetHandler server-status
  AuthType Basic
  AuthName "status"
  AuthUserFile "{root}/htpasswd"
  Require valid-user
</Location>
"#
        );
        let conf = dir.write("httpd.conf", &conf);
        let log = std::fs::File::create(dir.join("stdout.log")).unwrap();
        let child = Command::new(httpd)
            .arg("-X")
            .arg("-f")
            .arg(&conf)
            .arg("-d")
            .arg(dir.path())
            .env("APACHE_RUN_DIR", dir.path())
            .env("APACHE_LOCK_DIR", dir.path())
            .env("APACHE_LOG_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start apache2");
        let mut a = Apache {
            dir,
            port,
            https_port,
            certs,
            child,
        };
        let addr = a.addr();
        let ready = wait_until(Duration::from_secs(20), || {
            matches!(
                crate::servers::request(&addr, "GET", "/server-status?auto", &[], b""),
                Ok((200, _))
            )
        });
        if !ready {
            let _ = a.child.kill();
            panic!(
                "apache2 did not start; log:\n{}\n{}",
                std::fs::read_to_string(a.dir.join("stdout.log")).unwrap_or_default(),
                std::fs::read_to_string(a.dir.join("error.log")).unwrap_or_default()
            );
        }
        a
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
