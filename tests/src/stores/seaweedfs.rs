//! [`SeaweedFs`]: `weed server` (master, volume server, filer and S3 gateway in one process) on
//! loopback, serving one bucket from a temporary directory.
//!
//! SeaweedFS stands in for the self-hosted S3-compatible servers users run (MinIO's role; MinIO
//! itself is AGPL and not served by the package registries). Measured against Sluice's needs it
//! behaves as S3 does: a create-only PUT of an existing key answers 412, ranged and suffix GETs,
//! ListObjectsV2 with `start-after` and paging, DeleteObjects. With no identities configured it
//! accepts any signature, so the agent's URL carries dummy credentials.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::http::call;
use super::{StoreServer, find_binary, free_ports, install_dir, loopback};
use crate::HarnessError;
use crate::process::{ChildGuard, log_tail, wait_for_port};

/// The bucket every test store lives in (a folder per test inside it).
pub const SEAWEEDFS_BUCKET: &str = "sluice-test";
/// Master, volume server, filer and S3 gateway start in a few seconds; slack for a busy machine.
const STARTUP_TIMEOUT_S: u64 = 90;
/// Pause between readiness probes.
const READY_POLL_MS: u64 = 100;

#[derive(Debug)]
pub struct SeaweedFs {
    s3_port: u16,
    // Dropped in field order: the process dies before its directory is removed.
    process: ChildGuard,
    _dir: tempfile::TempDir,
}

impl SeaweedFs {
    /// `SLUICE_SEAWEEDFS_BIN`, else `target/store-servers/bin/weed`.
    pub fn binary() -> Option<PathBuf> {
        find_binary(
            "SLUICE_SEAWEEDFS_BIN",
            install_dir().join("bin").join("weed"),
        )
    }

    /// Starts `weed server` with every port ephemeral (gRPC ports too: their default, HTTP port +
    /// 10,000, can overflow or collide) and the extra gateways (Iceberg, Lance) off, then makes
    /// the bucket and waits until a PUT lands (the volume server must have registered first).
    pub fn start(binary: &Path) -> Result<SeaweedFs, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-seaweedfs-")
            .tempdir()
            .map_err(HarnessError::io("create a directory for SeaweedFS"))?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)
            .map_err(HarnessError::io("create SeaweedFS's data directory"))?;
        let [
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
        ] = free_ports::<8>()?;
        let mut command = Command::new(binary);
        command
            .current_dir(dir.path())
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-master.port.grpc={master_grpc}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-volume.port.grpc={volume_grpc}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-filer.port.grpc={filer_grpc}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.port.grpc={s3_grpc}"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            // Small volumes: a test writes megabytes, and each volume is a file of up to this.
            .arg("-master.volumeSizeLimitMB=64")
            .arg(format!(
                "-s3.localSocket={}",
                dir.path().join("s3.sock").display()
            ))
            .arg(format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ));
        let log = dir.path().join("seaweedfs.log");
        let mut process = ChildGuard::spawn("SeaweedFS", &mut command, &log)?;
        let address = loopback(s3);
        wait_for_port(
            address,
            &mut process,
            Duration::from_secs(STARTUP_TIMEOUT_S),
        )?;
        let deadline = Instant::now() + Duration::from_secs(STARTUP_TIMEOUT_S);
        let bucket = format!("/{SEAWEEDFS_BUCKET}");
        let probe = format!("/{SEAWEEDFS_BUCKET}/.sluice-ready");
        let mut last = String::new();
        loop {
            // 409 BucketAlreadyOwnedByYou: an earlier round made it.
            let made = call(address, "PUT", &bucket, &[], b"")
                .map(|answer| {
                    last = format!("PUT {bucket}: {} {}", answer.status, answer.body);
                    answer.status == 200 || answer.status == 409
                })
                .unwrap_or(false);
            if made {
                let written = call(address, "PUT", &probe, &[], b"ready")
                    .map(|answer| {
                        last = format!("PUT {probe}: {} {}", answer.status, answer.body);
                        answer.status == 200
                    })
                    .unwrap_or(false);
                if written {
                    call(address, "DELETE", &probe, &[], b"")?;
                    break;
                }
            }
            if let Some(status) = process.try_status()? {
                return Err(HarnessError::ExitedEarly {
                    name: "SeaweedFS".to_owned(),
                    status: status.to_string(),
                    tail: log_tail(&log),
                    log,
                });
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::TimedOut {
                    name: format!("SeaweedFS (bucket and first write; last answer {last})"),
                    timeout_s: STARTUP_TIMEOUT_S,
                    tail: log_tail(&log),
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(READY_POLL_MS));
        }
        Ok(SeaweedFs {
            s3_port: s3,
            process,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT` of the S3 gateway.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn log(&self) -> &Path {
        self.process.log()
    }
}

impl StoreServer for SeaweedFs {
    /// Dummy credentials: SeaweedFS without identities accepts any signature, but the client
    /// must sign (it would otherwise look for credentials in the environment and on IMDS).
    fn store_url(&self, prefix: &str) -> String {
        format!(
            "s3://{SEAWEEDFS_BUCKET}/{prefix}?endpoint={}&region=us-east-1&path_style=true\
             &access_key_id=sluice&secret_access_key=sluice",
            self.endpoint()
        )
    }
}
