// The language tour used by the grammar tests: the 390M FOG-max configuration as a `.fog` file.
// Exports its text; parse.test.ts checks the tree, fuzz.test.ts mutates it.
export const EXAMPLE = `// FOG-max at the 390M configuration
import "common.fog"

precision fog_fp8dpa {
  mode        = fp8dpa
  activations = e4m3
  weights     = e4m3
  gradients   = e5m2
  scaling     = delayed(history = 1024, margin = 0, amax = max)
  override layers 0, 15 { mode = bf16 }
  override attn.qk { mode = bf16 }
}

model fog_max extends base {
  vocab = 131072; context = 4096
  width = 1024
  layers = 16
  heads = 8
  kv_heads = 4
  head_dim = width / heads
  mlp_width = 6144
  embedding { multiplier = 50  init = normal(std = 0.02) }
  head { tied = true  norm = none }
  attention attn {
    qk_norm = rmsnorm(gain = frozen(1))
    rope = rope(base = 500000, scaling = llama3(factor = 8, low_freq = 1, high_freq = 4, original = 8192))
    softmax_scale = 0.125
    causal = true
  }
  mlp ffn { gated = false  activation = xielu(alpha_p = 0.8, alpha_n = 0.8, beta = 0.5, eps = -1e-6) }
  block {
    probe a = attn(h)
    h = h + rmsnorm(a, gain = 1 / sqrt(layers))
    h = h + rmsnorm(ffn(h), gain = layers ^ -0.5)
  }
  precision = fog_fp8dpa
  train {
    data = brown  tokenizer = bytes  batch = 32  seq_len = 256  steps = 1500
    optimizer = adamw(lr = 3e-3, betas = [0.9, 0.95], weight_decay = 0.1, clip = 1.0)
    schedule = wsd(warmup = 100, decay = 0.2)
  }
}
`;
