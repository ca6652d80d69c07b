// Prints the WebGPU adapter Dawn finds, or exits 1 when there is none.
import { create, globals } from "webgpu";
Object.assign(globalThis, globals);
const gpu = create([]);
const adapter = await gpu.requestAdapter();
if (!adapter) {
  console.error("no WebGPU adapter");
  process.exit(1);
}
const info = adapter.info ?? {};
console.log(`adapter: ${info.vendor ?? "?"} ${info.architecture ?? ""} ${info.device ?? ""} ${info.description ?? ""}`.trim());
process.exit(0);
