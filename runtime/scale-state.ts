// Per-slot FP8 scale state (papers.md §2): the scale each quantize node casts with and the amax
// history it records into, updated after a pass per the slot's recipe (delayed, current, blockwise).
// The CPU reference uses it directly; the GPU runtime mirrors the same layout and formulas.
import type { ScaleSlot, Scaling } from "../compiler/ir.js";
import { FP8_FORMATS } from "./fp8.js";

/** Largest finite f32: a delayed scale that overflows is clamped here (Transformer Engine rule). */
export const FLT_MAX = 3.4028234663852886e38;

/** Largest finite value of a slot's FP8 format (E4M3 448, E5M2 57344). */
export function fp8Max(slot: Pick<ScaleSlot, "format">): number {
  return FP8_FORMATS[slot.format].maxFinite;
}

/**
 * The scale that maps `amax` onto the top of the format: fp8_max / amax / 2^margin, or with `pow2`
 * 2^(⌊log2(fp8_max / amax)⌋ − margin). Null when amax is 0 or not finite (the caller keeps its old
 * scale). Rounded to f32 because the scale is f32 state on the GPU.
 */
export function scaleFromAmax(amax: number, max: number, margin: number, pow2: boolean): number | null {
  if (!(amax > 0) || !Number.isFinite(amax)) return null;
  const ratio = max / amax;
  if (pow2) {
    // Clamp the exponent so the scale stays a finite f32 power of two.
    const e = Math.min(127, Math.max(-149, Math.floor(Math.log2(ratio)) - margin));
    return 2 ** e;
  }
  const s = Math.fround(Math.fround(ratio) / 2 ** margin);
  return Number.isFinite(s) ? s : FLT_MAX;
}

/** The scales to cast one tensor with: one per block of blockRows × blockCols (row-major grid). */
export interface CastScales {
  scales: Float64Array;
  /** The tensor viewed as 2-D: rows = product of the leading dimensions, cols = the last one. */
  rows: number;
  cols: number;
  blockRows: number;
  blockCols: number;
}

/** The scale that applies to element i of a tensor cast with `c`. */
export function scaleAt(c: CastScales, i: number): number {
  const r = Math.floor(i / c.cols);
  const col = i - r * c.cols;
  const gridCols = Math.ceil(c.cols / c.blockCols);
  return c.scales[Math.floor(r / c.blockRows) * gridCols + Math.floor(col / c.blockCols)];
}

function view2d(shape: readonly number[]): [number, number] {
  if (shape.length === 0) return [1, 1];
  const cols = shape[shape.length - 1];
  return [shape.slice(0, -1).reduce((a, b) => a * b, 1), cols];
}

function absmax(x: ArrayLike<number>): number {
  let m = 0;
  // Math.max propagates NaN: the update rule then keeps the old scale.
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

function historyLength(s: Scaling): number {
  return s.kind === "delayed" ? Math.max(1, s.history) : 1;
}

interface SlotState {
  slot: ScaleSlot;
  scale: number;
  /** Ring of amaxes (f32, as on the GPU); `head` is this step's entry. */
  history: Float32Array;
  head: number;
}

/** One slot's state as stored in a checkpoint: its scale, its amax ring (as laid out) and ring head. */
export interface ScaleSlotSnapshot {
  scale: number;
  history: Float32Array;
  head: number;
}

/** Scale state of every FP8 slot of a graph. Step 0 casts with s = 1 under delayed scaling. */
export class ScaleState {
  private readonly state: SlotState[];

  constructor(slots: readonly ScaleSlot[]) {
    this.state = slots.map((slot) => ({ slot, scale: 1, history: new Float32Array(historyLength(slot.scaling)), head: 0 }));
  }

  private get(slot: number): SlotState {
    const s = this.state[slot];
    if (!s || s.slot.id !== slot) throw new Error(`ScaleState: no scale slot #${slot}`);
    return s;
  }

  /** The per-tensor scale the slot casts with now (delayed), or last used (current). */
  scale(slot: number): number {
    return this.get(slot).scale;
  }

  scaleInv(slot: number): number {
    return Math.fround(1 / this.get(slot).scale);
  }

  /** The amax history, most recent first. */
  history(slot: number): number[] {
    const { history, head } = this.get(slot);
    return Array.from(history, (_, i) => history[(head - i + history.length) % history.length]);
  }

  /** A copy of every slot's state, in slot order (for checkpoints and for evaluation on a copy). */
  snapshot(): ScaleSlotSnapshot[] {
    return this.state.map((s) => ({ scale: s.scale, history: s.history.slice(), head: s.head }));
  }

  /** Replaces every slot's state with a snapshot taken from a graph with the same slots. */
  restore(snap: readonly ScaleSlotSnapshot[]): void {
    if (snap.length !== this.state.length) throw new Error(`ScaleState.restore: ${snap.length} slots given, the graph has ${this.state.length}`);
    snap.forEach((x, i) => {
      const s = this.state[i];
      if (x.history.length !== s.history.length || !(x.head >= 0 && x.head < s.history.length)) {
        throw new Error(`ScaleState.restore: slot #${i} "${s.slot.name}" has an amax history of ${s.history.length} (head ${x.head}, ${x.history.length} given)`);
      }
      s.scale = x.scale;
      s.history.set(x.history);
      s.head = x.head;
    });
  }

  /** Records an amax into this step's history entry (max with what the step already recorded). */
  record(slot: number, amax: number): void {
    const s = this.get(slot);
    s.history[s.head] = Math.max(s.history[s.head], amax);
  }

  /**
   * The scales to cast tensor `x` (of `shape`) through `slot` with, now; records amax(x). Delayed:
   * the stored scale. Current: from amax(x), keeping the old scale when amax is 0 or not finite.
   * Blockwise: one just-in-time scale per block (1 where a block's amax is 0 or not finite); the
   * weight-role slots use `weightBlock`, the others `activationBlock`, over the tensor as stored.
   */
  cast(slot: number, x: ArrayLike<number>, shape: readonly number[]): CastScales {
    const s = this.get(slot);
    const [rows, cols] = view2d(shape);
    const amax = absmax(x);
    this.record(slot, amax);
    const sc = s.slot.scaling;
    const whole = (scale: number): CastScales => ({
      scales: Float64Array.of(scale),
      rows,
      cols,
      blockRows: rows,
      blockCols: cols,
    });
    if (sc.kind === "delayed") return whole(s.scale);
    if (sc.kind === "current") {
      s.scale = scaleFromAmax(amax, fp8Max(s.slot), sc.margin, sc.pow2) ?? s.scale;
      return whole(s.scale);
    }
    const [br, bc] = s.slot.role === "weight" ? sc.weightBlock : sc.activationBlock;
    const blockRows = Math.min(br, rows);
    const blockCols = Math.min(bc, cols);
    const gridCols = Math.ceil(cols / blockCols);
    const amaxes = new Float64Array(Math.ceil(rows / blockRows) * gridCols);
    for (let i = 0; i < rows * cols; i++) {
      const r = Math.floor(i / cols);
      const b = Math.floor(r / blockRows) * gridCols + Math.floor((i - r * cols) / blockCols);
      amaxes[b] = Math.max(amaxes[b], Math.abs(x[i]));
    }
    const scales = amaxes.map((a) => scaleFromAmax(a, fp8Max(s.slot), 0, sc.pow2) ?? 1);
    return { scales, rows, cols, blockRows, blockCols };
  }

  /**
   * End of a pass (papers.md §2.1 steps 3–5): delayed slots take amax* = max(history) (or the most
   * recent entry) and s = fp8_max / amax* / 2^margin, keeping the old s when amax* is 0 or not
   * finite; then every chosen slot's ring rolls and its new entry is zeroed. `which` picks the
   * slots (default: all), e.g. forward slots after the forward pass.
   */
  update(which: (slot: ScaleSlot) => boolean = () => true): void {
    for (const s of this.state) {
      if (!which(s.slot)) continue;
      const sc = s.slot.scaling;
      if (sc.kind === "delayed") {
        const amax = sc.amax === "most_recent" ? s.history[s.head] : absmax(s.history);
        s.scale = scaleFromAmax(amax, fp8Max(s.slot), sc.margin, sc.pow2) ?? s.scale;
      }
      s.head = (s.head + 1) % s.history.length;
      s.history[s.head] = 0;
    }
  }
}
