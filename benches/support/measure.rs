//! Wall clock, `getrusage`, and `/proc` readings around one measured operation.

use std::time::{Duration, Instant};

/// Whose resource usage to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Who {
    /// This process, all threads (`RUSAGE_SELF`): in-process clients.
    SelfProcess,
    /// Waited-for children (`RUSAGE_CHILDREN`): `psql`.
    Children,
}

/// One `getrusage` reading.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    /// User CPU seconds.
    pub(crate) user: f64,
    /// System CPU seconds.
    pub(crate) sys: f64,
    /// `ru_maxrss` in KiB (see [`peak_rss_kib`] for its catch).
    pub(crate) maxrss_kib: u64,
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Reads `getrusage` for `who`.
pub(crate) fn usage(who: Who) -> Usage {
    let which = match who {
        Who::SelfProcess => libc::RUSAGE_SELF,
        Who::Children => libc::RUSAGE_CHILDREN,
    };
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid, writable `rusage`; getrusage only writes it, and
    // with a valid `who` it cannot fail (checked below anyway).
    let rc = unsafe { libc::getrusage(which, ru.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage failed");
    // SAFETY: zero-initialised, and getrusage filled it in.
    let ru = unsafe { ru.assume_init() };
    Usage {
        user: seconds(ru.ru_utime),
        sys: seconds(ru.ru_stime),
        maxrss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
    }
}

/// CPU seconds used machine-wide so far (all CPUs; everything but idle and
/// iowait), from the first line of `/proc/stat` (10 ms ticks); `None` if
/// unreadable.
pub(crate) fn machine_busy() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let all: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Some(all.saturating_sub(idle) as f64 / hz)
}

/// `(seconds on a CPU, seconds runnable but waiting for one)` from a
/// `schedstat` file (ns precision).
fn schedstat(path: &str) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let mut f = s.split_whitespace().map(|v| v.parse::<u64>().ok());
    let (run, wait) = (f.next()??, f.next()??);
    Some((run as f64 / 1e9, wait as f64 / 1e9))
}

/// [`schedstat`] of process `pid` (its main thread: a backend has one).
pub(crate) fn process_sched(pid: u32) -> Option<(f64, f64)> {
    schedstat(&format!("/proc/{pid}/schedstat"))
}

/// System CPU seconds of process `pid` (`stime` in `/proc/<pid>/stat`, in
/// clock ticks: 10 ms resolution at the usual 100 Hz).
pub(crate) fn process_stime(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let ticks: f64 = rest.split(' ').nth(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// [`schedstat`] summed over this process's threads.
pub(crate) fn self_sched() -> Option<(f64, f64)> {
    let mut sum = (0.0, 0.0);
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let (run, wait) = schedstat(path.to_str()?)?;
        sum = (sum.0 + run, sum.1 + wait);
    }
    Some(sum)
}

fn delta(after: Option<(f64, f64)>, before: Option<(f64, f64)>) -> Option<(f64, f64)> {
    let (a, b) = (after?, before?);
    Some((a.0 - b.0, a.1 - b.1))
}

/// A started measurement.
#[derive(Debug)]
pub(crate) struct Timer {
    who: Who,
    start: Instant,
    before: Usage,
    server_pid: Option<u32>,
    server_before: Option<(f64, f64)>,
    server_sys_before: Option<f64>,
    self_before: Option<(f64, f64)>,
    machine_before: Option<f64>,
}

/// What one measured operation cost.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cost {
    /// Wall time.
    pub(crate) wall: Duration,
    /// User CPU seconds spent during it.
    pub(crate) user: f64,
    /// System CPU seconds spent during it.
    pub(crate) sys: f64,
    /// CPU seconds of the server backend during it, when its pid is known.
    pub(crate) server: Option<f64>,
    /// Of [`Cost::server`], the system (kernel) CPU seconds: for COPY OUT,
    /// mostly the socket send path.
    pub(crate) server_sys: Option<f64>,
    /// Seconds the server backend was runnable but waiting for a CPU.
    pub(crate) server_wait: Option<f64>,
    /// Seconds this process's threads were runnable but waiting for a CPU
    /// (in-process clients only).
    pub(crate) client_wait: Option<f64>,
    /// CPU seconds used by the whole machine during it.
    pub(crate) machine: Option<f64>,
}

impl Timer {
    /// Starts measuring now; `server_pid` is the backend's pid, if known.
    pub(crate) fn start(who: Who, server_pid: Option<u32>) -> Self {
        let before = usage(who);
        let server_before = server_pid.and_then(process_sched);
        let server_sys_before = server_pid.and_then(process_stime);
        let self_before = self_sched();
        let machine_before = machine_busy();
        Self {
            who,
            start: Instant::now(),
            before,
            server_pid,
            server_before,
            server_sys_before,
            self_before,
            machine_before,
        }
    }

    /// Stops: wall time and CPU deltas since [`Timer::start`].
    pub(crate) fn stop(&self) -> Cost {
        let wall = self.start.elapsed();
        let machine = machine_busy().zip(self.machine_before).map(|(a, b)| a - b);
        let server = delta(self.server_pid.and_then(process_sched), self.server_before);
        let client = delta(self_sched(), self.self_before);
        let after = usage(self.who);
        Cost {
            wall,
            user: after.user - self.before.user,
            sys: after.sys - self.before.sys,
            server: server.map(|s| s.0),
            server_sys: self
                .server_pid
                .and_then(process_stime)
                .zip(self.server_sys_before)
                .map(|(a, b)| a - b),
            server_wait: server.map(|s| s.1),
            client_wait: client.filter(|_| self.who == Who::SelfProcess).map(|c| c.1),
            machine,
        }
    }
}

/// Peak resident set size in KiB of `who`.
///
/// For this process: `VmHWM` from `/proc/self/status`, the high-water mark of
/// this program image alone. `ru_maxrss` of `RUSAGE_SELF` is not that on Linux:
/// it keeps the parent's high-water mark across `posix_spawn`/`execve`, so a
/// case process would report at least its parent's peak. For children:
/// `ru_maxrss` of `RUSAGE_CHILDREN` (the largest waited-for child; its floor is
/// the small case process that spawned it).
pub(crate) fn peak_rss_kib(who: Who) -> u64 {
    if who == Who::SelfProcess {
        let hwm = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            });
        if let Some(kib) = hwm {
            return kib;
        }
    }
    usage(who).maxrss_kib
}
