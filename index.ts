// The library API: the CLI is a thin layer over these. Re-exports only; no logic here.
export { parseFog as parse } from "./grammar/index.js";
export type { FogFile } from "./grammar/ast.js";
export { type Diagnostic, type Span, formatDiagnostic } from "./grammar/diagnostics.js";
export { check, type CheckOptions, type CheckResult } from "./compiler/check.js";
export { compile, type CompileOptions, type CompileResult, type Program } from "./compiler/pipeline.js";
export type { CheckedModel } from "./compiler/model.js";
export type { Graph, Node, OpKind } from "./compiler/ir.js";
export { printGraph } from "./compiler/ir-text.js";
export { modelStats, type ModelStats } from "./compiler/stats.js";
export { train, RunError, type TrainOptions, type TrainResult, type LogRecord, type KurtosisWarningEvent, type WarningAction } from "./runtime/train.js";
export { insertProbes, probeOutputs, stripProbes, type ProbeOutput } from "./compiler/probes.js";
export { KurtosisMonitor, DEFAULT_MONITOR, type MonitorOptions, type Warning } from "./runtime/kurtosis.js";
export { generate, type GenerateOptions, type GenerateResult } from "./runtime/generate.js";
export { exportPytorch, writePackage, ExportError, type ExportOptions, type ExportedParam, type PytorchExport } from "./compiler/export-pytorch.js";
export type { Executor, StepStats, TrainState } from "./runtime/executor.js";
export { CheckpointError } from "./runtime/checkpoint.js";
export { DataError } from "./runtime/data.js";
