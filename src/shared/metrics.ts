import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export type RunOutcome = "ok" | "nonzero_exit" | "timeout" | "oom" | "canceled" | "error";

/** Prometheus metrics of one server (its own registry: no global state). */
export class Metrics {
  readonly registry = new Registry();
  private readonly runs: Counter<"outcome">;
  private readonly duration: Histogram<"outcome">;
  private readonly calls: Counter<"outcome">;
  private readonly refusals: Counter<"reason">;

  constructor(gauges: { queued: () => number; running: () => number; containers: () => number }) {
    const registers = [this.registry];
    this.runs = new Counter({ name: "codebox_runs_total", help: "execute_code runs by outcome", labelNames: ["outcome"], registers });
    this.duration = new Histogram({
      name: "codebox_run_duration_seconds",
      help: "Time from container start to exit",
      labelNames: ["outcome"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers,
    });
    this.calls = new Counter({ name: "codebox_bridge_calls_total", help: "Upstream tool calls made from sandboxes", labelNames: ["outcome"], registers });
    this.refusals = new Counter({ name: "codebox_bridge_refusals_total", help: "Bridge calls refused (bad token, limits)", labelNames: ["reason"], registers });
    new Gauge({ name: "codebox_queue_length", help: "Runs waiting for a slot", registers, collect() { this.set(gauges.queued()); } });
    new Gauge({ name: "codebox_runs_in_progress", help: "Runs holding a slot", registers, collect() { this.set(gauges.running()); } });
    new Gauge({ name: "codebox_active_containers", help: "Sandbox containers alive", registers, collect() { this.set(gauges.containers()); } });
    collectDefaultMetrics({ register: this.registry, prefix: "codebox_process_" });
  }

  run(outcome: RunOutcome, durationMs: number): void {
    this.runs.inc({ outcome });
    this.duration.observe({ outcome }, durationMs / 1000);
  }

  bridgeCall(ok: boolean): void {
    this.calls.inc({ outcome: ok ? "ok" : "error" });
  }

  bridgeRefusal(reason: string): void {
    this.refusals.inc({ reason });
  }
}
