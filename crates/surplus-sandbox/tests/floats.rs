//! NaN bits, the one thing about floating point that differs between architectures, as each
//! kind of [`Floats`] leaves them.

use std::time::Duration;

use surplus_sandbox::{Floats, Limits, Outcome, Sandbox, Task};
use tokio::sync::watch;

/// Writes to standard output the four bytes of the NaN that `0.0 / 0.0` gives, its operands read
/// from memory so that the compiler cannot fold the division away.
const ZERO_BY_ZERO: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (f32.store (i32.const 16)
      (f32.div (f32.load (i32.const 32)) (f32.load (i32.const 36))))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 4))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// The canonical NaN of WebAssembly: positive, quiet, no payload.
const CANONICAL_NAN: u32 = 0x7fc0_0000;

async fn nan_bits(sandbox: &Sandbox, floats: Floats) -> u32 {
    let wasm = wat::parse_str(ZERO_BY_ZERO).expect("valid text");
    let program = sandbox.program(&wasm, floats).expect("compiles");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("in"), b"").expect("input");
    let task = Task {
        input_dir: dir.path().to_owned(),
        input_name: "in".into(),
        args: vec![],
        seed: 1,
    };
    let limits = Limits {
        memory_bytes: 1 << 20,
        timeout: Duration::from_secs(60),
        output_bytes: 16,
    };
    let (_pause, paused) = watch::channel(false);
    let run = sandbox
        .run(&program, &task, limits, paused)
        .await
        .expect("runs");
    assert_eq!(run.outcome, Outcome::Success);
    u32::from_le_bytes(run.output.try_into().expect("four bytes"))
}

#[tokio::test]
async fn portable_floats_give_the_canonical_nan_and_native_ones_the_hardwares() {
    let sandbox = Sandbox::new(None).expect("sandbox");
    assert_eq!(nan_bits(&sandbox, Floats::Portable).await, CANONICAL_NAN);
    // What this machine's own division makes: on x86 a negative NaN (0xffc00000), on Arm the
    // canonical one. Runs of a task with native floats go to one class of machines for this.
    let hardware = (std::hint::black_box(0.0f32) / std::hint::black_box(0.0f32)).to_bits();
    assert_eq!(nan_bits(&sandbox, Floats::Native).await, hardware);
    if cfg!(target_arch = "x86_64") {
        assert_ne!(hardware, CANONICAL_NAN, "x86 makes a NaN of its own");
    }
    // Each kind is compiled once and kept: asking again gives the same program.
    let wasm = wat::parse_str(ZERO_BY_ZERO).expect("valid text");
    let native = sandbox.program(&wasm, Floats::Native).expect("cached");
    let portable = sandbox.program(&wasm, Floats::Portable).expect("cached");
    assert_eq!(native.hash, portable.hash);
    assert_eq!(
        (native.floats, portable.floats),
        (Floats::Native, Floats::Portable)
    );
}
