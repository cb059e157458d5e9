// RINGZERO_RESUME_CPU_PROF=DIR (issue 7 diagnostics): a CPU profile of this VMM's main thread through its first
// RINGZERO_RESUME_CPU_PROF_MS (default 1000) ms of wall time after a restored or migrated guest resumes, written to
// DIR/resume-PID.cpuprofile (Chrome DevTools' format, as `node --cpu-prof` writes, plus `resumeOffsetUs`: when the
// guest resumed, from the profile's startTime). `--cpu-prof` covers the whole process and writes only at a clean
// exit, and the benches end their VMMs with SIGKILL. The profiler is started before the restore or the incoming
// stream (startResumeProfile): starting it logs every compiled function, wasm ones included, which took ~200 ms of a
// migration destination's main thread at load ~13 and would land in the guest's first second.
import fs from 'node:fs';
import inspector from 'node:inspector';
import path from 'node:path';

let profiling: { session: inspector.Session; startedAt: number } | undefined;

/** Start the profiler if RINGZERO_RESUME_CPU_PROF asks for one (before the restore or the incoming migration). */
export function startResumeProfile(): void {
  if (!process.env.RINGZERO_RESUME_CPU_PROF || profiling !== undefined) return;
  const session = new inspector.Session();
  session.connect();
  // (an in-thread session answers synchronously: the profiler runs when this returns)
  session.post('Profiler.enable');
  // 200 µs samples, as test/support's RINGZERO_VMM_CPU_PROF
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  // (the profile's startTime is taken as Profiler.start begins, before it logs the code compiled so far: ~0.4 s at
  // load ~15)
  const startedAt = performance.now();
  session.post('Profiler.start');
  profiling = { session, startedAt };
}

/** The guest resumes now: the profile is written RINGZERO_RESUME_CPU_PROF_MS later. */
export function profileResume(): void {
  const dir = process.env.RINGZERO_RESUME_CPU_PROF;
  const p = profiling;
  if (!dir || p === undefined) return;
  const resumeOffsetUs = (performance.now() - p.startedAt) * 1000;
  const timer = setTimeout(() => {
    p.session.post('Profiler.stop', (error, result) => {
      if (error === null) {
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, `resume-${process.pid}.cpuprofile`), JSON.stringify({ ...result.profile, resumeOffsetUs }));
      }
      p.session.disconnect();
    });
  }, Number(process.env.RINGZERO_RESUME_CPU_PROF_MS ?? 1000));
  timer.unref();
}
