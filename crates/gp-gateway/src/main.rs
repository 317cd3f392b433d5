//! The `gp-gateway` binary: the command line ([`gp_gateway::cli`]) with the GP systems
//! this build registers ([`gp_gateway::systems::builtin`]).

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: glibc hands the freed top of its heap back to the
/// kernel after each uncached record is mapped and faults it in again on the next, which
/// cost up to 2x on mapping; mimalloc keeps freed pages for reuse (BENCHMARKS.md,
/// "Allocator"). The `system-allocator` feature leaves glibc's, for heap profilers that
/// follow `malloc` (heaptrack; BENCHMARKS.md, "The soak's heap").
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    gp_gateway::cli::main(gp_gateway::systems::builtin())
}
