// The divergence demonstration's spike rule (bench/divergence.ts `summarize`, docs/divergence.md) on
// synthetic loss series: where it must find a spike, where it must not, and the warning lead it reports.
import { describe, expect, it } from "vitest";
import { summarize } from "../../bench/divergence.js";
import { mulberry32 } from "../helpers/mulberry32.js";

/** A healthy curve logged every 10 steps: fast early drop to ~1.5 with Gaussian-ish noise of sd `noise`. */
function healthy(steps: number, noise: number, seed = 1): { step: number; loss: number }[] {
  const rand = mulberry32(seed);
  const out = [];
  for (let step = 10; step <= steps; step += 10) {
    const jitter = (rand() + rand() + rand() - 1.5) * 2 * noise;
    out.push({ step, loss: 1.5 + 4 * Math.exp(-step / 150) + jitter });
  }
  return out;
}

const warning = (step: number) => ({ step, series: "qkv_layer03", reason: "rise", value: 9, baseline: 4 });

describe("divergence spike rule", () => {
  it("finds no spike on healthy noisy curves (20 seeds)", () => {
    for (let seed = 1; seed <= 20; seed++) {
      const s = summarize("ok", healthy(1500, 0.02, seed), [], 1500, 0.1, 100);
      expect(s.spike, `seed ${seed}`).toBeUndefined();
      expect(s.maxRise).toBeLessThan(0.1);
    }
  });

  it("flags a planted rise of 0.3 nats from step 1000 within the smoothing window, and reports the lead", () => {
    const pts = healthy(1500, 0.02, 7).map((p) => ({ step: p.step, loss: p.loss + (p.step >= 1000 ? 0.3 : 0) }));
    const s = summarize("rise", pts, [warning(850), warning(900)], 1500, 0.1, 100);
    expect(s.spike?.kind).toBe("rise");
    expect(s.spike!.step).toBeGreaterThanOrEqual(1000);
    expect(s.spike!.step).toBeLessThanOrEqual(1040);
    expect(s.lead).toEqual({ first: s.spike!.step - 850, last: s.spike!.step - 900 });
  });

  it("counts a non-finite loss as a spike at its own step, even during warm-up", () => {
    const pts = healthy(300, 0.02).map((p) => ({ step: p.step, loss: p.step === 60 ? NaN : p.loss }));
    const s = summarize("nan", pts, [], 300, 0.1, 100);
    expect(s.spike).toEqual({ step: 60, kind: "non_finite", loss: NaN });
    expect(s.maxRise).toBe(Infinity);
  });

  it("judges rises only after `after` (the warm-up), and ignores warnings after the spike", () => {
    const pts = healthy(600, 0.02, 3).map((p) => ({ step: p.step, loss: p.loss + (p.step >= 60 && p.step <= 90 ? 2 : 0) }));
    const early = summarize("bump", pts, [warning(500)], 600, 0.1, 0);
    expect(early.spike?.kind).toBe("rise");
    expect(early.spike!.step).toBeLessThanOrEqual(90);
    expect(early.lead).toBeUndefined(); // the only warning came after the spike
    const late = summarize("bump", pts, [warning(500)], 600, 0.1, 150);
    expect(late.spike).toBeUndefined();
  });
});
