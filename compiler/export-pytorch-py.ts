// The architecture-independent Python of `fogc export --to pytorch`: layer classes, the FP8 targets,
// the safetensors reader/writer, fogc's PRNG/sampler/schedule ports and the training script. The
// per-model parts (config, parameter manifest, block wiring, GEMM rules) are emitted by export-pytorch.ts.

/** Layers of model.py: numerics helpers, norms, RoPE, attention, MLP and the model base class. */
export const PY_LAYERS = String.raw`
PRECISIONS = ("fp32", "bf16_gemm_inputs", "bf16", "recipe")
_BF16 = torch.bfloat16


class _RoundBF16(torch.autograd.Function):
    """Forward: round to bf16 (nearest-even) and back; backward: the gradient passes unchanged
    (fogc's casts sit on GEMM operands only and are straight-through)."""

    @staticmethod
    def forward(ctx, x):
        return x.to(_BF16).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g


class _RoundGradBF16(torch.autograd.Function):
    """Forward: identity; backward: the incoming gradient rounded to bf16 (fogc's BF16 mode rounds
    dY, the output gradient of every GEMM, before the dgrad and wgrad GEMMs)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g.to(_BF16).to(g.dtype)


def linear(x, w, mode="plain", fp8_gemm=None):
    """y = x @ w.T (w is [out, in] as in fogc). mode "bf16_gemm_inputs" rounds both operands in the
    forward and dY in the backward to bf16 while computing in the input dtype: fogc's BF16 mode."""
    if fp8_gemm is not None:
        return fp8_gemm(x, w)
    if mode == "bf16_gemm_inputs":
        return _RoundGradBF16.apply(F.linear(_RoundBF16.apply(x), _RoundBF16.apply(w)))
    return F.linear(x, w)


def softplus_inv(v):
    """softplus^-1(v) = log(e^v - 1), stable for large v (fogc runtime/init.ts)."""
    if not v > 0:
        raise ValueError("softplus_inv needs a positive value, got %r" % (v,))
    return v + math.log1p(-math.exp(-v)) if v > 20 else math.log(math.expm1(v))


class Gain:
    """A norm gain: trainable (a parameter starting at init) or frozen (the constant init)."""

    def __init__(self, trainable, init):
        self.trainable = bool(trainable)
        self.init = float(init)


class NormSpec:
    """rmsnorm | layernorm with eps, an optional gain and (layernorm) an optional bias."""

    def __init__(self, kind, eps, gain, bias=False):
        if kind not in ("rmsnorm", "layernorm"):
            raise ValueError("unknown norm kind %r" % (kind,))
        self.kind, self.eps, self.gain, self.bias = kind, float(eps), gain, bool(bias)

    def make(self, group):
        return Norm(group, self)


class Norm(nn.Module):
    """RMSNorm or LayerNorm over contiguous groups of 'group' elements of the last dimension (the
    width, or one head's head_dim for QK-norm; the gain is shared by the groups), in fp32:
    rmsnorm y = x / sqrt(mean(x^2) + eps) * gain; layernorm y = (x - mean) / sqrt(var + eps) * gain + bias."""

    def __init__(self, group, spec):
        super().__init__()
        self.group, self.kind, self.eps = group, spec.kind, spec.eps
        self.frozen_gain = None
        if spec.gain is not None and spec.gain.trainable:
            self.gain = nn.Parameter(torch.full((group,), spec.gain.init))
        else:
            self.register_parameter("gain", None)
            if spec.gain is not None and spec.gain.init != 1:
                self.frozen_gain = spec.gain.init
        if spec.kind == "layernorm" and spec.bias:
            if self.gain is None:
                raise ValueError("layernorm with a bias needs a trainable gain (as in fogc)")
            self.bias = nn.Parameter(torch.zeros(group))
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        shape = x.shape
        y = x.float().reshape(*shape[:-1], shape[-1] // self.group, self.group)
        if self.kind == "rmsnorm":
            y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
            if self.gain is not None:
                y = y * self.gain.float()
        else:
            gain = None if self.gain is None else self.gain.float()
            bias = None if self.bias is None else self.bias.float()
            y = F.layer_norm(y, (self.group,), gain, bias, self.eps)
        if self.frozen_gain is not None:
            y = y * self.frozen_gain
        return y.reshape(shape).to(x.dtype)


class LayerScale(nn.Module):
    """x * gamma, gamma a trainable vector of the width (papers.md section 5.4)."""

    def __init__(self, width, init):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((width,), float(init)))

    def forward(self, x):
        return x * self.gamma


class Linear(nn.Module):
    """A bias-free linear layer, weight [out, in] (fogc's layout); 'gemm', 'layer' and 'component'
    name the GEMM for the precision recipe (fp8.py). mode "plain" or "bf16_gemm_inputs"; 'fp8'
    is the plain-PyTorch FP8 executor fp8.enable() attaches, or None."""

    def __init__(self, in_features, out_features, gemm, layer, component):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.fogc_gemm, self.layer, self.component = gemm, layer, component
        self.mode = "plain"
        self.fp8 = None
        self.weight = nn.Parameter(torch.empty(out_features, in_features))

    def forward(self, x):
        return linear(x, self.weight, self.mode, self.fp8)

    def extra_repr(self):
        return "%d -> %d, gemm=%s" % (self.in_features, self.out_features, self.fogc_gemm)


class RopeScaling:
    """Llama-3.1 frequency rescaling (papers.md section 4)."""

    def __init__(self, factor, low_freq, high_freq, original):
        self.factor, self.low_freq, self.high_freq, self.original = float(factor), float(low_freq), float(high_freq), float(original)


class RopeSpec:
    def __init__(self, base, scaling=None):
        self.base, self.scaling = float(base), scaling


def rope_frequencies(head_dim, base, scaling=None):
    """f_i = base^(-2i/head_dim), i < head_dim/2, then Llama-3.1 rescaling: wavelength l = 2 pi / f;
    l < original/high_freq keeps f; l > original/low_freq gives f/factor; between, (1-a) f/factor + a f
    with a = (original/l - low_freq)/(high_freq - low_freq). Exactly runtime/reference-ops.ts."""
    f = [base ** ((-2 * i) / head_dim) for i in range(head_dim // 2)]
    if scaling is None:
        return f
    out = []
    for fi in f:
        lam = (2 * math.pi) / fi
        if lam < scaling.original / scaling.high_freq:
            out.append(fi)
        elif lam > scaling.original / scaling.low_freq:
            out.append(fi / scaling.factor)
        else:
            a = (scaling.original / lam - scaling.low_freq) / (scaling.high_freq - scaling.low_freq)
            out.append(((1 - a) * fi) / scaling.factor + a * fi)
    return out


class Rope(nn.Module):
    """Rotate-half RoPE on [batch, seq, heads, head_dim], position = index in the sequence:
    y1 = x1 cos - x2 sin, y2 = x2 cos + x1 sin with x1, x2 the two halves of each head. Angles in
    float64, rotation in fp32 (fogc: f64 math, f32 results)."""

    def __init__(self, head_dim, spec):
        super().__init__()
        self.head_dim = head_dim
        self.inv_freq = rope_frequencies(head_dim, spec.base, spec.scaling)
        self._cache = {}

    def _cos_sin(self, seq, device):
        key = (seq, str(device))
        if key not in self._cache:
            f = torch.tensor(self.inv_freq, dtype=torch.float64, device=device)
            pos = torch.arange(seq, dtype=torch.float64, device=device)
            ang = pos[:, None] * f[None, :]
            self._cache[key] = (torch.cos(ang).float()[None, :, None, :], torch.sin(ang).float()[None, :, None, :])
        return self._cache[key]

    def forward(self, x):
        cos, sin = self._cos_sin(x.shape[1], x.device)
        half = self.head_dim // 2
        x1, x2 = x[..., :half].float(), x[..., half:].float()
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


class QkNorm:
    """The per-head q/k regulariser: kind "none", "norm" (a NormSpec over head_dim) or "tanh"
    (tanh(alpha * x) elementwise, alpha a trainable scalar per layer or a constant)."""

    def __init__(self, kind, norm=None, alpha=1.0, trainable=True):
        if kind not in ("none", "norm", "tanh"):
            raise ValueError("unknown qk_norm kind %r" % (kind,))
        self.kind, self.norm, self.alpha, self.trainable = kind, norm, float(alpha), bool(trainable)


def sdpa(q, k, v, causal, scale):
    """softmax(scale * q k^T + causal mask) v on [batch, heads, seq, head_dim]; grouped-query:
    query head h reads kv head h // (heads / kv_heads), as fogc."""
    if k.shape[1] != q.shape[1]:
        try:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, enable_gqa=True)
        except TypeError:  # torch < 2.5
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)


class Attention(nn.Module):
    """Grouped-query attention with separate q/k/v projections (fogc's parameter layout: q.weight
    [heads*head_dim, width], k/v.weight [kv_heads*head_dim, width], o.weight [width, heads*head_dim];
    head h owns columns h*head_dim..(h+1)*head_dim), the q/k regulariser before RoPE, then SDPA with
    the model's softmax scale. 'dpa' is Transformer Engine's DotProductAttention when fp8.enable()
    turns on FP8 attention."""

    fogc_attention = True

    def __init__(self, *, layer, component, width, heads, kv_heads, head_dim, qk_norm, rope, softmax_scale, causal):
        super().__init__()
        self.layer, self.component = layer, component
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.softmax_scale, self.causal = float(softmax_scale), bool(causal)
        self.mode = "plain"
        self.dpa = None
        self.q = Linear(width, heads * head_dim, "qkv", layer, component)
        self.k = Linear(width, kv_heads * head_dim, "qkv", layer, component)
        self.v = Linear(width, kv_heads * head_dim, "qkv", layer, component)
        self.qk_norm = qk_norm
        if qk_norm.kind == "norm":
            self.q_norm = qk_norm.norm.make(head_dim)
            self.k_norm = qk_norm.norm.make(head_dim)
        elif qk_norm.kind == "tanh" and qk_norm.trainable:
            self.alpha_q = nn.Parameter(torch.full((1,), qk_norm.alpha))
            self.alpha_k = nn.Parameter(torch.full((1,), qk_norm.alpha))
        self.o = Linear(heads * head_dim, width, "out", layer, component)
        self.rope = Rope(head_dim, rope) if rope is not None else None

    def _reg(self, t, which):
        kind = self.qk_norm.kind
        if kind == "none":
            return t
        if kind == "norm":
            return (self.q_norm if which == "q" else self.k_norm)(t)
        if self.qk_norm.trainable:
            return torch.tanh(t * (self.alpha_q if which == "q" else self.alpha_k))
        return torch.tanh(t * self.qk_norm.alpha) if self.qk_norm.alpha != 1 else torch.tanh(t)

    def forward(self, x):
        b, s = x.shape[0], x.shape[1]
        q = self._reg(self.q(x), "q").reshape(b, s, self.heads, self.head_dim)
        k = self._reg(self.k(x), "k").reshape(b, s, self.kv_heads, self.head_dim)
        v = self.v(x).reshape(b, s, self.kv_heads, self.head_dim)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)
        if self.mode == "bf16_gemm_inputs":
            q, k, v = _RoundBF16.apply(q), _RoundBF16.apply(k), _RoundBF16.apply(v)
        if self.dpa is not None:
            o = self.dpa(q.to(_BF16).contiguous(), k.to(_BF16).contiguous(), v.to(_BF16).contiguous())
            o = o.reshape(b, s, self.heads * self.head_dim)
        else:
            o = sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), self.causal, self.softmax_scale)
            o = o.transpose(1, 2).reshape(b, s, self.heads * self.head_dim)
        if self.mode == "bf16_gemm_inputs":
            o = _RoundGradBF16.apply(o)
        return self.o(o)


class Activation:
    """gelu (exact erf) | silu | swiglu | geglu | smooth_swiglu | xielu(alpha_p, alpha_n, beta, eps)."""

    GATED = ("swiglu", "geglu", "smooth_swiglu")

    def __init__(self, kind, alpha_p=0.8, alpha_n=0.8, beta=0.5, eps=-1e-6):
        if kind not in ("gelu", "silu", "swiglu", "geglu", "smooth_swiglu", "xielu"):
            raise ValueError("unknown activation %r" % (kind,))
        self.kind = kind
        self.alpha_p, self.alpha_n, self.beta, self.eps = float(alpha_p), float(alpha_n), float(beta), float(eps)


def xielu(x, rho_p, rho_n, beta, eps):
    """papers.md section 5.6: alpha_p = softplus(rho_p), alpha_n = beta + softplus(rho_n);
    x > 0: alpha_p x^2 + beta x; x <= 0: alpha_n (exp(min(x, eps)) - 1) - alpha_n x + beta x."""
    alpha_p = F.softplus(rho_p)
    alpha_n = beta + F.softplus(rho_n)
    pos = alpha_p * x * x + beta * x
    neg = alpha_n * torch.expm1(torch.clamp(x, max=eps)) - alpha_n * x + beta * x
    return torch.where(x > 0, pos, neg)


class Mlp(nn.Module):
    """fc1 -> activation -> fc2. Gated activations: fc1.weight is [2*hidden, width], gate rows first,
    then up rows; y = act(gate) * up. smooth_swiglu (papers.md section 5.2): s = max|gate| per token
    (detached), z = silu(gate) * up / s, y = s * fc2(z). xielu: rho_p, rho_n through softplus."""

    def __init__(self, *, layer, component, width, hidden, activation):
        super().__init__()
        self.layer, self.component, self.hidden = layer, component, hidden
        self.activation = activation
        gated = activation.kind in Activation.GATED
        self.fc1 = Linear(width, 2 * hidden if gated else hidden, "fc1", layer, component)
        if activation.kind == "xielu":
            self.rho_p = nn.Parameter(torch.full((1,), softplus_inv(activation.alpha_p)))
            self.rho_n = nn.Parameter(torch.full((1,), softplus_inv(activation.alpha_n - activation.beta)))
        self.fc2 = Linear(hidden, width, "fc2", layer, component)

    def forward(self, x):
        h1 = self.fc1(x)
        act = self.activation
        kind = act.kind
        scale = None
        if kind == "gelu":
            a = F.gelu(h1)
        elif kind == "silu":
            a = F.silu(h1)
        elif kind == "xielu":
            a = xielu(h1, self.rho_p, self.rho_n, act.beta, act.eps)
        else:
            gate, up = h1.split(self.hidden, dim=-1)
            if kind == "geglu":
                a = F.gelu(gate) * up
            else:
                a = F.silu(gate) * up
            if kind == "smooth_swiglu":
                scale = gate.detach().abs().amax(dim=-1, keepdim=True)
                a = a / scale
        y = self.fc2(a)
        if scale is not None:
            y = y * scale
        return y


class FogModelBase(nn.Module):
    """What every exported model shares: precision modes, initialisation from the manifest, and
    the manifest check. Subclasses define __init__ (the modules) and forward."""

    precision = "fp32"
    head_mode = "plain"
    head_fp8 = None

    def set_precision(self, mode, fp8_backend="auto"):
        """fp32: plain fp32 (set torch.backends.cuda.matmul.allow_tf32 = False for exact fp32).
        bf16_gemm_inputs: fp32 compute, every GEMM operand rounded to bf16 in the forward and the
        output gradient in the backward: what 'fogc run --precision bf16' computes.
        bf16: torch.autocast(bfloat16). recipe: bf16 autocast plus the .fog recipe's FP8 GEMMs
        (fp8.py; call after moving the model to its device). Returns the FP8 report lines."""
        if mode not in PRECISIONS:
            raise ValueError("precision must be one of %s, got %r" % (", ".join(PRECISIONS), mode))
        self.precision = mode
        sub = "bf16_gemm_inputs" if mode == "bf16_gemm_inputs" else "plain"
        for m in self.modules():
            if isinstance(m, (Linear, Attention)):
                m.mode = sub
        self.head_mode = sub
        if mode == "recipe":
            return _fp8.enable(self, backend=fp8_backend)
        return []

    def autocast_context(self, device):
        if self.precision in ("bf16", "recipe") and device.type in ("cuda", "cpu"):
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def reset_parameters(self, generator=None):
        """Initialises every parameter from PARAMS: normal(std), constants, softplus^-1 (papers.md 4, 5.7)."""
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, _shape, init, _decay, _lr in PARAMS:
                p = params[name]
                if init[0] == "normal":
                    p.normal_(0.0, init[1], generator=generator)
                elif init[0] == "const":
                    p.fill_(init[1])
                else:
                    p.fill_(softplus_inv(init[1]))

    def init_like_fogc(self, seed):
        """The exact initial values 'fogc run' uses for this seed (fogc's PRNG, ported in data.py).
        Pure Python: fine for small models, slow (minutes) for hundreds of millions of parameters."""
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, shape, init, _decay, _lr in PARAMS:
                values = _data.init_values(init, math.prod(shape), seed, name)
                params[name].copy_(torch.frombuffer(bytearray(values.tobytes()), dtype=torch.float32).reshape(shape))

    def param_groups(self):
        """(decay, lr_scale) -> parameters, from PARAMS: matrices decay; gains, scalars, gammas do not."""
        params = dict(self.named_parameters())
        groups = {}
        for name, _shape, _init, decay, lr_scale in PARAMS:
            groups.setdefault((decay, lr_scale), []).append(params[name])
        return groups


def check_manifest(model):
    """Raises unless the module's parameters are exactly PARAMS (names and shapes)."""
    model = unwrap(model)
    got = {n: tuple(p.shape) for n, p in model.named_parameters()}
    want = {n: tuple(s) for n, s, *_ in PARAMS}
    if got != want:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        wrong = sorted(n for n in set(got) & set(want) if got[n] != want[n])
        raise AssertionError("module parameters differ from the manifest: missing %s, extra %s, shape %s" % (missing, extra, wrong))
    return True


def unwrap(module):
    """The exported model inside DDP / torch.compile wrappers."""
    for _ in range(8):
        inner = getattr(module, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(module, "module", None)
        if not isinstance(inner, nn.Module):
            return module
        module = inner
    return module


def load_fogc_checkpoint(module, path, optimizer=None):
    """Loads the weights of a 'fogc run --checkpoint DIR' file (tensors param.<name>, F32, fogc's
    shapes) into the module; with an AdamW optimizer also its moments (adam_m.*, adam_v.*) and step.
    Checks the format and the parameter-shape hash. Load before FSDP2 sharding. Returns the metadata."""
    meta, tensors = _st.read_torch(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError("%s: not a fogc checkpoint (format %r, expected %r)" % (path, meta.get("format"), CHECKPOINT_FORMAT))
    if meta.get("shapes_hash") != SHAPES_HASH:
        raise ValueError("%s: checkpoint of model %r with parameter shapes %s; this export is %r with %s: export the .fog file and model the checkpoint was trained with"
                         % (path, meta.get("model"), meta.get("shapes_hash"), MODEL_NAME, SHAPES_HASH))
    model = unwrap(module)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, shape, *_ in PARAMS:
            t = tensors.get("param." + name)
            if t is None:
                raise ValueError("%s: tensor param.%s is missing" % (path, name))
            if tuple(t.shape) != tuple(shape):
                raise ValueError("%s: param.%s has shape %s, the model needs %s" % (path, name, tuple(t.shape), tuple(shape)))
            p = params[name]
            p.copy_(t.to(device=p.device, dtype=p.dtype))
    if optimizer is not None:
        load_fogc_moments(optimizer, model, tensors, int(meta["step"]))
    return meta


def load_fogc_moments(optimizer, model, tensors, step):
    """Sets a torch AdamW's state from fogc's moments: exp_avg = adam_m, exp_avg_sq = adam_v, step."""
    params = dict(unwrap(model).named_parameters())
    group_of = {}
    for g in optimizer.param_groups:
        for p in g["params"]:
            group_of[id(p)] = g
    for name, shape, *_ in PARAMS:
        p = params[name]
        g = group_of.get(id(p))
        if g is None:
            raise ValueError("parameter %s is not in the optimizer" % name)
        on_device = bool(g.get("fused") or g.get("capturable"))
        optimizer.state[p] = {
            "step": torch.tensor(float(step), dtype=torch.float32, device=p.device if on_device else "cpu"),
            "exp_avg": tensors["adam_m." + name].to(device=p.device, dtype=p.dtype).reshape(shape).clone(),
            "exp_avg_sq": tensors["adam_v." + name].to(device=p.device, dtype=p.dtype).reshape(shape).clone(),
        }


def _f32_bytes(t):
    t = t.detach().to(device="cpu", dtype=torch.float32).contiguous()
    try:
        return t.numpy().tobytes()
    except (RuntimeError, TypeError, ImportError):  # torch without numpy
        return _st.f32_bytes(t.flatten().tolist())


def save_fogc_checkpoint(module, path, *, step, total_steps, seed, sampler_state, optimizer=None, precision="bf16", write=True):
    """Writes a checkpoint in fogc's layout ('fogc run --resume' and 'fogc generate' read it; it holds
    no FP8 scale state, so fogc resumes it under a recipe without FP8 slots, e.g. --precision bf16).
    sampler_state: {"prng": [4 x u32], "step": batches drawn} (data.BatchSampler.state()). Under FSDP2
    every rank must call it (the shards are gathered); pass write=False on all ranks but one."""
    params = dict(unwrap(module).named_parameters())
    entries = []
    for name, shape, *_ in PARAMS:
        p = params[name]
        st = optimizer.state.get(p, {}) if optimizer is not None else {}
        for prefix, t in (("param", p), ("adam_m", st.get("exp_avg")), ("adam_v", st.get("exp_avg_sq"))):
            t = torch.zeros(shape) if t is None else t
            if hasattr(t, "full_tensor"):
                t = t.full_tensor()
            entries.append((prefix + "." + name, "F32", list(shape), _f32_bytes(t)))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model": MODEL_NAME,
        "file": FOG_FILE,
        "shapes_hash": SHAPES_HASH,
        "step": str(int(step)),
        "total_steps": str(int(total_steps)),
        "seed": str(int(seed)),
        "precision": precision,
        "tokenizer": TOKENIZER,
        "sampler": json.dumps({"prng": [int(x) for x in sampler_state["prng"]], "step": int(sampler_state["step"])}, separators=(",", ":")),
        "fp8_slots": "0",
    }
    if write:
        _st.write(path, entries, meta)
`;

/** fp8.py's code after the emitted rule table: both FP8 targets and the switch between them. */
export const PY_FP8 = String.raw`
ATTENTION_GEMMS = ("qk", "pv")
FP8_MAX = {"e4m3": 448.0, "e5m2": 57344.0}
FLT_MAX = 3.4028234663852886e38


def rule_for(layer, component, gemm):
    """The rule in force for one GEMM (layer None for the LM head), resolved by fogc at export time."""
    return RULES[GEMM_RULES[(layer, component, gemm)]]


def is_fp8(rule, gemm):
    """Linear GEMMs are FP8 in modes fp8 and fp8dpa; attention GEMMs (qk, pv) in fp8dpa only."""
    return rule.mode == "fp8dpa" if gemm in ATTENTION_GEMMS else rule.mode != "bf16"


def uses_fp8():
    return any(is_fp8(RULES[i], key[2]) for key, i in GEMM_RULES.items())


# ---- plain PyTorch target ------------------------------------------------------------------------


def _scale_from_amax(amax, fmax, margin, pow2, old):
    """fogc runtime/scale-state.ts: s = fmax / amax / 2^margin (pow2: 2^(floor(log2(fmax/amax)) - margin));
    the old scale is kept when amax is 0 or not finite; an overflowing scale becomes FLT_MAX."""
    ratio = fmax / amax
    if pow2:
        s = torch.exp2(torch.clamp(torch.floor(torch.log2(ratio)) - margin, -149.0, 127.0))
    else:
        s = ratio / (2.0 ** margin)
        s = torch.where(torch.isinf(s), torch.full_like(s, FLT_MAX), s)
    ok = (amax > 0) & torch.isfinite(amax)
    return torch.where(ok, s, old)


class ScaleSlot:
    """One quantised operand's state, as fogc's ScaleState: the scale it casts with, and an amax
    history whose entry 0 collects this step's amax. Delayed: update() (once per optimizer step,
    after the backward) takes max(history) or history[0] and rolls the ring. Current: the scale
    comes from the tensor being cast."""

    def __init__(self, fmt, scaling, saturate):
        if scaling.kind == "blockwise":
            raise NotImplementedError("blockwise scaling needs Transformer Engine (Float8BlockScaling); the plain PyTorch target has tensorwise scales only")
        self.fmt, self.scaling, self.saturate = fmt, scaling, saturate
        self.dtype = torch.float8_e4m3fn if fmt == "e4m3" else torch.float8_e5m2
        self.max = FP8_MAX[fmt]
        self.history = None
        self.scale = None

    def _ensure(self, device):
        if self.history is None or self.history.device != device:
            n = self.scaling.history if self.scaling.kind == "delayed" else 1
            self.history = torch.zeros(max(1, n), dtype=torch.float32, device=device)
            self.scale = torch.ones((), dtype=torch.float32, device=device)

    def cast(self, x):
        """(fp8 tensor, 1/scale): q = cast(x * s) (clamped to the format's max when saturating)."""
        self._ensure(x.device)
        xd = x.detach()
        amax = xd.abs().amax().float()
        self.history[0] = torch.maximum(self.history[0], amax)
        if self.scaling.kind == "current":
            self.scale = _scale_from_amax(amax, self.max, self.scaling.margin, self.scaling.pow2, self.scale)
        y = xd.float() * self.scale
        if self.saturate:
            y = y.clamp(-self.max, self.max)
        return y.to(self.dtype), self.scale.reciprocal()

    def update(self):
        if self.history is None:
            return
        if self.scaling.kind == "delayed":
            amax = self.history.max() if self.scaling.amax == "max" else self.history[0]
            self.scale = _scale_from_amax(amax, self.max, self.scaling.margin, self.scaling.pow2, self.scale)
        self.history = torch.roll(self.history, 1)
        self.history[0] = 0.0


def _scaled_mm_ok(a, b):
    if not (hasattr(torch, "_scaled_mm") and a.is_cuda):
        return False
    if a.dtype == torch.float8_e5m2 and b.dtype == torch.float8_e5m2:
        return False  # cuBLASLt has no E5M2 x E5M2 GEMM
    if torch.cuda.get_device_capability(a.device) < (8, 9):
        return False
    return a.shape[0] % 16 == 0 and a.shape[1] % 16 == 0 and b.shape[1] % 16 == 0


_WARNED = []


def _mm(a, b, a_inv, b_inv, out_dtype):
    """(a / s_a) @ (b / s_b) from FP8 operands: torch._scaled_mm (a row-major, b column-major, FP32
    accumulation) where the device and shapes allow, else dequantised in fp32 (same values)."""
    if _scaled_mm_ok(a, b):
        try:
            r = torch._scaled_mm(a, b, scale_a=a_inv, scale_b=b_inv, out_dtype=out_dtype)
            return r[0] if isinstance(r, tuple) else r
        except RuntimeError as e:  # a layout/dtype combination this torch build refuses
            if not _WARNED:
                _WARNED.append(True)
                warnings.warn("torch._scaled_mm refused %s x %s -> %s (%s); dequantising instead" % (a.dtype, b.dtype, out_dtype, e))
    with torch.autocast(device_type=a.device.type, enabled=False):
        return ((a.float() * a_inv) @ (b.float() * b_inv)).to(out_dtype)


class _Fp8LinearFn(torch.autograd.Function):
    """papers.md section 3.1: fprop Y = X W^T (E4M3 x E4M3 by default), dgrad dX = dY W (E5M2 x E4M3),
    wgrad dW = dY^T X (E5M2 x E4M3, from the saved FP8 copy of X); FP32 accumulation, BF16 outputs,
    FP32 weight gradient."""

    @staticmethod
    def forward(ctx, x, w, gemm):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])
        xq, xi = gemm.x.cast(x2)
        wq, wi = gemm.w.cast(w)
        y = _mm(xq, wq.t(), xi, wi, torch.bfloat16)
        ctx.save_for_backward(xq, wq, xi, wi)
        ctx.gemm = gemm
        ctx.x_shape, ctx.x_dtype, ctx.w_dtype = x.shape, x.dtype, w.dtype
        return y.reshape(*lead, w.shape[0])

    @staticmethod
    def backward(ctx, dy):
        xq, wq, xi, wi = ctx.saved_tensors
        gq, gi = ctx.gemm.dy.cast(dy.reshape(-1, dy.shape[-1]))
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = _mm(gq, wq.t().contiguous().t(), gi, wi, torch.bfloat16).reshape(ctx.x_shape).to(ctx.x_dtype)
        if ctx.needs_input_grad[1]:
            dw = _mm(gq.t().contiguous(), xq.t().contiguous().t(), gi, xi, torch.float32).to(ctx.w_dtype)
        return dx, dw, None


class TorchFp8Gemm:
    """One FP8 linear layer on the plain PyTorch target: slots for its input (activations format),
    weight (weights format) and output gradient (gradients format), as fogc's precision pass."""

    def __init__(self, rule):
        self.rule = rule
        self.x = ScaleSlot(rule.activations, rule.scaling, rule.saturate)
        self.w = ScaleSlot(rule.weights, rule.scaling, rule.saturate)
        self.dy = ScaleSlot(rule.gradients, rule.scaling, rule.saturate)

    def __call__(self, x, w):
        return _Fp8LinearFn.apply(x, w, self)

    def slots(self):
        return (self.x, self.w, self.dy)


def update(model):
    """End of an optimizer step (after backward): all-reduce (MAX) this step's amaxes over the
    process group, then every plain-PyTorch slot takes its new scale and rolls its history.
    Transformer Engine modules update themselves when their autocast region exits."""
    gemms = getattr(model, "_fp8_torch_gemms", None) or []
    slots = [s for g in gemms for s in g.slots() if s.history is not None]
    if not slots:
        return
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        heads = torch.stack([s.history[0] for s in slots])
        dist.all_reduce(heads, op=dist.ReduceOp.MAX)
        for s, a in zip(slots, heads):
            s.history[0] = a
    for s in slots:
        s.update()


# ---- Transformer Engine target -------------------------------------------------------------------


def _te_modules():
    try:
        import transformer_engine.pytorch as te
        from transformer_engine.common import recipe as te_recipe
    except Exception:
        return None
    return te, te_recipe


def _te_format(rule, Format):
    fwd = {rule.activations, rule.weights}
    if len(fwd) != 1:
        raise NotImplementedError("Transformer Engine uses one FP8 format for activations and weights; this rule has %s" % sorted(fwd))
    f = fwd.pop()
    if f == "e4m3" and rule.gradients == "e5m2":
        return Format.HYBRID
    if f == rule.gradients:
        return Format.E4M3 if f == "e4m3" else Format.E5M2
    raise NotImplementedError("Transformer Engine has no format with forward %s and backward %s" % (f, rule.gradients))


def te_recipe(rule, fp8_dpa=False):
    """The Transformer Engine recipe of one rule: DelayedScaling (history, margin, amax algorithm),
    Float8CurrentScaling (TE >= 2.2) or Float8BlockScaling (TE >= 2.3); HYBRID = E4M3 forward,
    E5M2 backward. Raises NotImplementedError for what TE cannot express."""
    te, R = _te_modules()
    fmt = _te_format(rule, R.Format)
    sc = rule.scaling
    if not rule.saturate:
        raise NotImplementedError("saturate = false (non-saturating casts): Transformer Engine always saturates")
    if sc.kind == "delayed":
        if sc.pow2:
            raise NotImplementedError("pow2 delayed scales: Transformer Engine computes fp8_max / amax / 2^margin")
        if sc.margin != int(sc.margin):
            raise NotImplementedError("a fractional margin: Transformer Engine takes an integer margin")
        return R.DelayedScaling(margin=int(sc.margin), fp8_format=fmt, amax_history_len=int(sc.history),
                                amax_compute_algo=sc.amax, fp8_dpa=fp8_dpa)
    if sc.kind == "current":
        if not hasattr(R, "Float8CurrentScaling"):
            raise NotImplementedError("current scaling needs Transformer Engine >= 2.2 (Float8CurrentScaling)")
        if sc.margin or sc.pow2:
            raise NotImplementedError("current scaling with a margin or pow2 scales (TE: NVTE_FP8_CURRENT_SCALING_POWER_2_SCALES is global)")
        kw = {"fp8_dpa": True} if fp8_dpa else {}
        return R.Float8CurrentScaling(fp8_format=fmt, **kw)
    if not hasattr(R, "Float8BlockScaling"):
        raise NotImplementedError("blockwise scaling needs Transformer Engine >= 2.3 (Float8BlockScaling)")
    if tuple(sc.activation_block) != (1, 128) or tuple(sc.weight_block) != (128, 128):
        raise NotImplementedError("block shapes other than 1x128 (activations) and 128x128 (weights)")
    return R.Float8BlockScaling(fp8_format=fmt)


def _recipe_key(rule):
    s = rule.scaling
    return (rule.activations, rule.weights, rule.gradients, rule.saturate, s.kind, s.history, s.margin, s.amax, s.pow2,
            tuple(s.activation_block), tuple(s.weight_block))


_SCOPED = {}


def _scope(module, recipe, te):
    """Makes 'module' run inside its own fp8_autocast(recipe) (when rules need different recipes)."""
    base = type(module)
    if base not in _SCOPED:
        class Scoped(base):
            def forward(self, *args, **kwargs):
                with te.fp8_autocast(enabled=True, fp8_recipe=self._fogc_recipe):
                    return super().forward(*args, **kwargs)
        Scoped.__name__ = "Scoped" + base.__name__
        _SCOPED[base] = Scoped
    module.__class__ = _SCOPED[base]
    module._fogc_recipe = recipe


def _set_submodule(model, name, new):
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def enable(model, backend="auto"):
    """Turns on the recipe's FP8 GEMMs (call after model.to(device), before the optimizer is made
    and checkpoints are loaded: Transformer Engine modules replace FP8 linears, keeping the
    parameter names). backend: "auto" (TE when importable), "te" or "torch". Returns report lines."""
    if backend not in ("auto", "te", "torch"):
        raise ValueError("fp8 backend must be auto, te or torch, got %r" % (backend,))
    if not uses_fp8():
        model._fp8_torch_gemms = []
        return ["recipe %s has no FP8 GEMM: bf16 autocast only" % RECIPE_NAME]
    te_mods = _te_modules() if backend != "torch" else None
    if backend == "te" and te_mods is None:
        raise RuntimeError("--fp8-backend te: transformer_engine is not importable")
    report = ["fp8 recipe %s on %s" % (RECIPE_NAME, "Transformer Engine" if te_mods else "plain PyTorch (torch._scaled_mm)")]
    torch_gemms, te_items = [], []
    for name, m in list(model.named_modules()):
        gemm = getattr(m, "fogc_gemm", None)
        if gemm is not None:
            rule = rule_for(m.layer, m.component, gemm)
            if not is_fp8(rule, gemm):
                continue
            if te_mods and gemm != "head":  # the head sits outside the blocks' fp8_autocast region
                te_items.append(("linear", name, m, rule))
            else:
                m.fp8 = TorchFp8Gemm(rule)
                torch_gemms.append(m.fp8)
        elif getattr(m, "fogc_attention", False):
            rule = rule_for(m.layer, m.component, "pv")
            if is_fp8(rule, "pv"):
                if te_mods:
                    te_items.append(("attention", name, m, rule))
                else:
                    report.append("%s: FP8 attention (fp8dpa) not honoured on plain PyTorch: Q.K^T and P.V run in BF16 (SDPA)" % name)
    head_rule = rule_for(None, "head", "head")
    if is_fp8(head_rule, "head") and not hasattr(model, "head"):
        model.head_fp8 = TorchFp8Gemm(head_rule)
        torch_gemms.append(model.head_fp8)
        report.append("head (tied to embed.weight): FP8 on plain PyTorch")
    if te_mods:
        te, R = te_mods
        any_dpa = any(kind == "attention" for kind, *_ in te_items)
        recipes, keys = {}, set()
        for kind, name, m, rule in te_items:
            try:
                recipes[name] = te_recipe(rule, fp8_dpa=any_dpa)
                keys.add(_recipe_key(rule))
            except NotImplementedError as e:
                if kind == "attention":
                    report.append("%s: FP8 attention not honoured (%s): SDPA in BF16" % (name, e))
                else:
                    m.fp8 = TorchFp8Gemm(rule)
                    torch_gemms.append(m.fp8)
                    report.append("%s: %s; this GEMM uses the plain PyTorch target" % (name, e))
        single = len(keys) <= 1
        for kind, name, m, rule in te_items:
            if name not in recipes:
                continue
            if kind == "linear":
                new = te.Linear(m.in_features, m.out_features, bias=False, params_dtype=m.weight.dtype, device=m.weight.device)
                with torch.no_grad():
                    new.weight.copy_(m.weight)
                new.fogc_site = (m.layer, m.component, m.fogc_gemm)
                _set_submodule(model, name, new)
            else:
                m.dpa = te.DotProductAttention(m.heads, m.head_dim, num_gqa_groups=m.kv_heads, attention_dropout=0.0,
                                               qkv_format="bshd", attn_mask_type="causal" if m.causal else "no_mask",
                                               softmax_scale=m.softmax_scale, layer_number=m.layer + 1)
                new = m.dpa
            if not single:
                _scope(new, recipes[name], te)
        if recipes and single:
            model._fp8_te_region = (te, next(iter(recipes.values())))
            report.append("one fp8_autocast region around the blocks: %s" % type(next(iter(recipes.values()))).__name__)
        elif recipes:
            report.append("rules need %d different recipes: each FP8 module runs in its own fp8_autocast" % len(keys))
        report.append("%d linear layers and %d attentions on Transformer Engine" % (
            sum(1 for k, n, *_ in te_items if k == "linear" and n in recipes), sum(1 for k, n, *_ in te_items if k == "attention" and n in recipes)))
    model._fp8_torch_gemms = torch_gemms
    if torch_gemms:
        report.append("%d GEMMs on plain PyTorch FP8 (delayed/current tensorwise scales, fogc's update rule)" % len(torch_gemms))
    return report


def region(model):
    """The FP8 autocast region Model.forward puts around the blocks (Transformer Engine, one recipe)."""
    r = getattr(model, "_fp8_te_region", None)
    if r is None:
        return contextlib.nullcontext()
    te, recipe = r
    return te.fp8_autocast(enabled=True, fp8_recipe=recipe)
`;

/** safetensors_lite.py: whole file (no per-model content). */
export const PY_SAFETENSORS = String.raw`# A dependency-free reader and writer of safetensors files, the format of fogc checkpoints: an
# 8-byte little-endian header length, a JSON header (tensors' dtype/shape/offsets, __metadata__),
# then the raw little-endian data. read_raw needs only the standard library; read_torch needs torch.
from __future__ import annotations

import array
import json
import os
import struct
import sys

ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
ARRAY_CODE = {"F64": "d", "F32": "f", "I32": "i", "I64": "q", "I16": "h", "I8": "b", "U8": "B"}
MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(ValueError):
    pass


def read_raw(path):
    """(metadata, {name: (dtype, shape, bytes)}) with every offset and size validated."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise SafetensorsError("%s: truncated (%d bytes)" % (path, len(buf)))
    (n,) = struct.unpack("<Q", buf[:8])
    if n > MAX_HEADER or 8 + n > len(buf):
        raise SafetensorsError("%s: bad header length %d" % (path, n))
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise SafetensorsError("%s: the header is not a JSON object" % path)
    meta = header.pop("__metadata__", {}) or {}
    data = memoryview(buf)[8 + n:]
    out = {}
    for name, e in header.items():
        dtype, shape, (begin, end) = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in ITEMSIZE:
            raise SafetensorsError("%s: tensor %s has unsupported dtype %s" % (path, name, dtype))
        numel = 1
        for d in shape:
            numel *= d
        if not (0 <= begin <= end <= len(data)) or end - begin != numel * ITEMSIZE[dtype]:
            raise SafetensorsError("%s: tensor %s has bad offsets [%d, %d] for %s %s" % (path, name, begin, end, dtype, shape))
        out[name] = (dtype, list(shape), bytes(data[begin:end]))
    return meta, out


def to_array(dtype, raw):
    """A flat array.array of a tensor's values (standard library only; F32/F64/integer dtypes)."""
    a = array.array(ARRAY_CODE[dtype])
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


def read_torch(path, device="cpu"):
    """(metadata, {name: torch.Tensor})."""
    import torch

    if sys.byteorder != "little":
        raise SafetensorsError("read_torch needs a little-endian machine")
    dt = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
          "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
    meta, raw = read_raw(path)
    out = {}
    for name, (dtype, shape, b) in raw.items():
        t = torch.frombuffer(bytearray(b), dtype=dt[dtype]) if b else torch.empty(0, dtype=dt[dtype])
        out[name] = t.reshape(shape).to(device)
    return meta, out


def write(path, entries, metadata):
    """Writes [(name, dtype, shape, little-endian bytes)] and a {str: str} metadata map atomically
    (temp file in the same directory, fsync, rename), data 8-byte aligned as fogc writes it."""
    header = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    offset = 0
    for name, dtype, shape, b in entries:
        numel = 1
        for d in shape:
            numel *= d
        if len(b) != numel * ITEMSIZE[dtype]:
            raise SafetensorsError("tensor %s: %d bytes for %s %s" % (name, len(b), dtype, shape))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    js += b" " * ((8 - (8 + len(js)) % 8) % 8)
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.tmp-%d" % (os.path.basename(path), os.getpid()))
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(js)))
            f.write(js)
            for _name, _dtype, _shape, b in entries:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def f32_bytes(values):
    """Little-endian F32 bytes of a sequence of floats (standard library)."""
    a = array.array("f", values)
    if sys.byteorder != "little":
        a.byteswap()
    return a.tobytes()
`;

/** data.py: fogc's PRNG, parameter init, batch sampler, validation batches and token sources. */
export const PY_DATA = String.raw`# fogc's randomness and data pipeline in plain Python (no torch): the xoshiro128** PRNG seeded through
# splitmix32 (runtime/prng.ts), per-parameter init streams (runtime/init.ts), the batch sampler and
# validation windows (runtime/data.ts), and the token sources train.py reads.
from __future__ import annotations

import array
import math
import os
import sys

MASK = 0xFFFFFFFF


def _imul(a, b):
    return (a * b) & MASK


def _rotl(x, k):
    return ((x << k) & MASK) | (x >> (32 - k))


def hash_string(text):
    """FNV-1a over the UTF-16 code units of text (fogc's stream id of a parameter name)."""
    h = 0x811C9DC5
    units = text.encode("utf-16-le")
    for i in range(0, len(units), 2):
        h = _imul(h ^ (units[i] | (units[i + 1] << 8)), 0x01000193)
    return h


class Prng:
    """xoshiro128** with splitmix32 seeding: the same stream as fogc's Prng for the same seed."""

    def __init__(self, state):
        self.s = [int(w) & MASK for w in state]
        if not any(self.s):
            self.s[0] = 1

    @staticmethod
    def from_seed(seed, stream=0):
        st = ((seed & MASK) ^ _imul(stream & MASK, 0x9E3779B1)) & MASK
        st = (st ^ ((seed // 4294967296) & MASK)) & MASK
        words = []
        for _ in range(4):
            st = (st + 0x9E3779B9) & MASK
            z = st
            z = _imul(z ^ (z >> 16), 0x85EBCA6B)
            z = _imul(z ^ (z >> 13), 0xC2B2AE35)
            words.append((z ^ (z >> 16)) & MASK)
        return Prng(words)

    def state(self):
        return list(self.s)

    def next_u32(self):
        s = self.s
        result = _imul(_rotl(_imul(s[1], 5), 7), 9)
        t = (s[1] << 9) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 11)
        return result

    def next_float(self):
        hi = self.next_u32() >> 5
        lo = self.next_u32() >> 6
        return (hi * 67108864 + lo) / 9007199254740992

    def next_int(self, n):
        if not (1 <= n <= 4294967296):
            raise ValueError("next_int: bad range %r" % (n,))
        limit = 4294967296 - (4294967296 % n)
        while True:
            x = self.next_u32()
            if x < limit:
                return x % n

    def normal_pair(self):
        u1 = self.next_float()
        while u1 == 0:
            u1 = self.next_float()
        u2 = self.next_float()
        r = math.sqrt(-2 * math.log(u1))
        return r * math.cos(2 * math.pi * u2), r * math.sin(2 * math.pi * u2)


def init_values(init, n, seed, name):
    """A parameter's n initial values as fogc computes them (f32): init is ("normal", std),
    ("const", v) or ("softplus_inv", v); normal draws come from the stream (seed, hash(name))."""
    kind, v = init
    if kind == "const":
        return array.array("f", [v]) * n
    if kind == "softplus_inv":
        return array.array("f", [v + math.log1p(-math.exp(-v)) if v > 20 else math.log(math.expm1(v))]) * n
    prng = Prng.from_seed(seed, hash_string(name))
    out = array.array("f", bytes(4 * n))
    for i in range(0, n, 2):
        a, b = prng.normal_pair()
        out[i] = a * v
        if i + 1 < n:
            out[i + 1] = b * v
    return out


SAMPLER_STREAM = 0x5A4D91E


class BatchSampler:
    """Random windows of seq_len + 1 tokens, uniform over the training stream, seeded like fogc:
    next() returns the window starts of one batch (fogc's step k trains on the k-th batch)."""

    def __init__(self, n_tokens, batch, seq_len, seed):
        if n_tokens < seq_len + 1:
            raise ValueError("the training split has %d tokens, fewer than seq_len + 1 = %d" % (n_tokens, seq_len + 1))
        self.n, self.batch, self.seq_len = n_tokens, batch, seq_len
        self.prng = Prng.from_seed(seed, SAMPLER_STREAM)
        self.drawn = 0

    def next(self):
        span = self.n - self.seq_len
        starts = [self.prng.next_int(span) for _ in range(self.batch)]
        self.drawn += 1
        return starts

    def state(self):
        return {"prng": self.prng.state(), "step": self.drawn}

    def restore(self, state):
        self.prng = Prng(state["prng"])
        self.drawn = int(state["step"])


def validation_starts(n_val, batch, seq_len, count):
    """fogc's fixed validation windows: batch*count starts evenly spaced over the validation split."""
    span = n_val - seq_len
    if span < 1:
        raise ValueError("the validation split has %d tokens, fewer than seq_len + 1 = %d" % (n_val, seq_len + 1))
    total = batch * count
    starts = [(i * span) // total for i in range(total)]
    return [starts[c * batch:(c + 1) * batch] for c in range(count)]


def split_tokens(tokens, val_fraction):
    """The last ceil(n * val_fraction) tokens are validation, the rest training."""
    n_val = math.ceil(len(tokens) * val_fraction)
    cut = len(tokens) - n_val
    return tokens[:cut], tokens[cut:]


def _folder_files(root):
    out = []
    for name in sorted(os.listdir(root)):
        if name.startswith("."):
            continue
        p = os.path.join(root, name)
        if os.path.isdir(p):
            out.extend(_folder_files(p))
        elif os.path.isfile(p):
            out.append(p)
    return out


def read_text(path):
    """A text file, or every text file under a folder (sorted by path, hidden and binary files
    skipped) joined by blank lines: fogc's 'data = "PATH"'."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
    texts = []
    for p in _folder_files(path):
        with open(p, "rb") as f:
            b = f.read()
        if b"\0" in b:
            continue
        texts.append(b.decode("utf-8", errors="replace"))
    if not texts:
        raise ValueError("training data folder %s holds no text files" % path)
    return "\n\n".join(texts)


def bytes_tokens(text):
    """fogc's bytes tokenizer: the UTF-8 bytes of the text (iterated: array("i", b"...") would
    reinterpret the raw bytes as int32 words)."""
    return array.array("i", iter(text.encode("utf-8")))


def read_token_file(path):
    """A token stream of little-endian int32 ids (as 'bench/export-batch.ts --stream FILE' writes)."""
    a = array.array("i")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    if sys.byteorder != "little":
        a.byteswap()
    return a
`;

/** schedule.py: learning-rate schedules and the clip rule of runtime/optimizer.ts. */
export const PY_SCHEDULE = String.raw`# fogc's learning-rate schedules and gradient-clip rule (runtime/optimizer.ts), in plain Python, so
# the exported training loop steps its learning rate exactly as 'fogc run' does.
from __future__ import annotations

import math


def learning_rate(schedule, peak, step, total):
    """The learning rate of the update after 'step' completed updates (0-based) of a 'total'-update run.
    warmup: peak * step / warmup for step < warmup (the first update has lr 0); constant: peak;
    cosine: min + (peak - min) * (1 + cos(pi p)) / 2, p = (step - warmup) / (total - 1 - warmup);
    wsd: peak until the last D = round(decay * total) updates (not before the end of warmup), then
    min + (peak - min)(1 - sqrt(r)), r = (step - start + 1) / D. Steps >= total: min (cosine, wsd)."""
    kind, warmup = schedule["kind"], schedule["warmup"]
    if step < warmup:
        return (peak * step) / warmup
    if kind == "constant":
        return peak
    if kind == "cosine":
        if step >= total:
            return schedule["minLr"]
        span = total - 1 - warmup
        p = min(1.0, (step - warmup) / span) if span > 0 else 1.0
        return schedule["minLr"] + (peak - schedule["minLr"]) * 0.5 * (1 + math.cos(math.pi * p))
    if kind == "wsd":
        if step >= total:
            return schedule["minLr"]
        d = _js_round(schedule["decay"] * total)
        start = max(warmup, total - d)
        length = total - start
        if length <= 0 or step < start:
            return peak
        r = min(1.0, (step - start + 1) / length)
        return schedule["minLr"] + (peak - schedule["minLr"]) * (1 - math.sqrt(r))
    raise ValueError("unknown schedule %r" % (kind,))


def _js_round(x):
    """JavaScript's Math.round (halves round up), not Python's banker's rounding."""
    return math.floor(x + 0.5)


def clip_factor(norm, clip):
    """clip / (norm + 1e-6) when the global gradient norm exceeds clip (> 0), else 1."""
    if not clip > 0 or not math.isfinite(norm) or norm <= clip:
        return 1.0
    return clip / (norm + 1e-6)
`;

/** train.py after its emitted header: the training loop (single process, DDP or FSDP2). */
export const PY_TRAIN = String.raw`
import argparse
import json
import math
import os
import time

import torch
import torch.distributed as dist

try:
    from . import data, fp8, schedule
    from .model import CONFIG, Model, check_manifest, load_fogc_checkpoint, load_fogc_moments, save_fogc_checkpoint, unwrap
    from .safetensors_lite import read_torch
except ImportError:
    import data
    import fp8
    import schedule
    from model import CONFIG, Model, check_manifest, load_fogc_checkpoint, load_fogc_moments, save_fogc_checkpoint, unwrap
    from safetensors_lite import read_torch

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "train_config.json")) as _f:
    TRAIN_CONFIG = json.load(_f)
TRAIN = TRAIN_CONFIG["train"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train the exported %s as 'fogc run' does (AdamW, clip, schedule, batch sampling)." % CONFIG["name"])
    p.add_argument("--steps", type=int, default=TRAIN["steps"], help="total optimizer steps (default: the .fog train section's)")
    p.add_argument("--seed", type=int, default=TRAIN["seed"])
    p.add_argument("--batch", type=int, default=TRAIN["batch"], help="global batch in sequences (split over the ranks)")
    p.add_argument("--seq-len", type=int, default=TRAIN["seqLen"])
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the .fog optimizer's)")
    p.add_argument("--warmup", type=int, default=None, help="warmup steps (default: the .fog schedule's)")
    p.add_argument("--precision", choices=["recipe", "bf16", "bf16_gemm_inputs", "fp32"], default="recipe",
                   help="recipe: the .fog precision recipe (FP8 per fp8.py); bf16: autocast; bf16_gemm_inputs: fogc's --precision bf16 numerics in fp32; fp32")
    p.add_argument("--fp8-backend", choices=["auto", "te", "torch"], default="auto", help="FP8 target for --precision recipe")
    p.add_argument("--data", default=None, help="random | text:PATH (bytes tokenizer) | tokens:FILE (int32 stream); default: the .fog data when it is a path with the bytes tokenizer")
    p.add_argument("--init", choices=["torch", "fogc"], default="torch", help="fogc: the exact initial values of 'fogc run' (pure Python PRNG, slow for big models)")
    p.add_argument("--from-fogc", default=None, help="start from a fogc checkpoint: weights, AdamW moments, step and sampler state")
    p.add_argument("--save", default=None, help="write a fogc-layout checkpoint to this file at the end")
    p.add_argument("--jsonl", default=None, help="append one JSON record per logged step")
    p.add_argument("--log-every", type=int, default=TRAIN["logEvery"])
    p.add_argument("--eval-every", type=int, default=TRAIN["evalEvery"])
    p.add_argument("--parallel", choices=["auto", "none", "ddp", "fsdp2"], default="auto", help="auto: DDP when torchrun starts more than one process")
    p.add_argument("--dist-backend", choices=["nccl", "gloo"], default=None, help="default nccl on CUDA; gloo lets several ranks share one GPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (off by default: fp32 means fp32)")
    return p.parse_args(argv)


def setup_distributed(args):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        backend = args.dist_backend or ("nccl" if device.type == "cuda" else "gloo")
        if backend == "nccl" and torch.cuda.device_count() < world:
            raise SystemExit("train.py: %d ranks but %d GPUs: NCCL needs one GPU per rank; pass --dist-backend gloo to share GPUs" % (world, torch.cuda.device_count()))
        dist.init_process_group(backend=backend)
    return rank, world, device


def make_optimizer(model, lr, fused=False):
    """torch AdamW with fogc's groups: decay (matrices) and no-decay (gains, scalars, gammas), each
    with its lr multiplier; weight decay is decoupled (p *= 1 - lr*wd) exactly as fogc's AdamW."""
    opt = TRAIN["optimizer"]
    groups = []
    for (decay, lr_scale), params in unwrap(model).param_groups().items():
        groups.append({"params": params, "weight_decay": opt["weightDecay"] if decay else 0.0, "lr_scale": lr_scale, "lr": lr * lr_scale})
    kw = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=lr, betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"], **kw)


def grad_norm_and_clip(params, clip):
    """fogc: global L2 norm of all gradients, then scale by clip / (norm + 1e-6) when norm > clip."""
    norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


def train_step(model, optimizer, tokens, targets, lr, clip):
    """One update: forward, backward, clip, AdamW at lr, FP8 scale update. Returns (loss, grad_norm)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    loss = model(tokens, targets)
    loss.backward()
    gn = grad_norm_and_clip([p for p in model.parameters() if p.grad is not None], clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    fp8.update(unwrap(model))
    return loss.detach(), gn


def _int64(ids):
    """An array('i') of token ids as an int64 tensor."""
    return torch.frombuffer(bytearray(ids.tobytes()), dtype=torch.int32).long()


class Batches:
    """Global batches as fogc draws them (same sampler, same seed), each rank taking its rows."""

    def __init__(self, args, rank, world, device):
        self.device, self.rank, self.world = device, rank, world
        self.batch, self.seq_len = args.batch, args.seq_len
        if self.batch % world:
            raise SystemExit("train.py: the batch of %d sequences does not split over %d ranks" % (self.batch, world))
        spec = args.data
        if spec is None:
            if TRAIN["data"]["kind"] == "path" and TRAIN["tokenizer"] == "bytes":
                spec = "text:" + TRAIN_CONFIG["data_path"]
            else:
                raise SystemExit("train.py: the .fog data is %s with the %s tokenizer, which Python cannot rebuild; pass --data tokens:FILE "
                                 "(make it with: node --import tsx bench/export-batch.ts FILE.fog --stream FILE) or --data text:PATH or --data random"
                                 % (TRAIN["data"].get("path", "brown"), TRAIN["tokenizer"]))
        self.random = spec == "random"
        self.val = None
        if self.random:
            self.gen = torch.Generator().manual_seed(args.seed)
            self.sampler = data.BatchSampler(args.seq_len + 1, self.batch, args.seq_len, args.seed)
            return
        if spec.startswith("tokens:"):
            train = data.read_token_file(spec[len("tokens:"):])
        elif spec.startswith("text:"):
            train, self.val = data.split_tokens(data.bytes_tokens(data.read_text(spec[len("text:"):])), TRAIN["valFraction"])
        else:
            raise SystemExit("train.py: --data must be random, text:PATH or tokens:FILE, got %r" % spec)
        vocab = CONFIG["vocab"]
        if max(train) >= vocab:
            raise SystemExit("train.py: token id %d is outside the model's vocab %d" % (max(train), vocab))
        self.stream = _int64(train)
        self.sampler = data.BatchSampler(len(train), self.batch, args.seq_len, args.seed)

    def _rows(self, windows):
        per = self.batch // self.world
        mine = windows[self.rank * per:(self.rank + 1) * per]
        return mine[:, :-1].to(self.device), mine[:, 1:].to(self.device)

    def next(self):
        if self.random:
            self.sampler.drawn += 1
            w = torch.randint(0, CONFIG["vocab"], (self.batch, self.seq_len + 1), generator=self.gen)
            return self._rows(w)
        starts = self.sampler.next()
        w = torch.stack([self.stream[s:s + self.seq_len + 1] for s in starts])
        return self._rows(w)

    def validation(self):
        if self.val is None or len(self.val) < self.seq_len + 1:
            return []
        val = _int64(self.val)
        out = []
        for starts in data.validation_starts(len(self.val), self.batch, self.seq_len, TRAIN["evalBatches"]):
            out.append(self._rows(torch.stack([val[s:s + self.seq_len + 1] for s in starts])))
        return out


def _mean_over_ranks(x, world):
    x = x.detach().float().reshape(1)
    if world > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x = x / world
    return float(x)


def wrap(model, args, world, device):
    parallel = args.parallel
    if parallel == "auto":
        parallel = "ddp" if world > 1 else "none"
    if parallel != "none" and world == 1:
        parallel = "none"
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP
        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None), parallel
    if parallel == "fsdp2":
        try:
            from torch.distributed.fsdp import fully_shard
        except ImportError:
            from torch.distributed._composable.fsdp import fully_shard
        for layer in range(CONFIG["layers"]):
            fully_shard(getattr(model, "b%d" % layer))
        fully_shard(model)
        return model, parallel
    return model, parallel


def main(argv=None):
    args = parse_args(argv)
    rank, world, device = setup_distributed(args)
    say = print if rank == 0 else (lambda *a, **k: None)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.manual_seed(args.seed)
    peak = args.lr if args.lr is not None else TRAIN["optimizer"]["lr"]
    sched = dict(TRAIN["schedule"])
    if args.warmup is not None:
        sched["warmup"] = args.warmup

    model = Model()
    if args.init == "fogc":
        model.init_like_fogc(args.seed)
    model.to(device)
    for line in model.set_precision(args.precision, fp8_backend=args.fp8_backend):
        say(line)
    check_manifest(model)
    start, sampler_state, ckpt = 0, None, None
    if args.from_fogc:
        meta = load_fogc_checkpoint(model, args.from_fogc)
        start, sampler_state = int(meta["step"]), json.loads(meta["sampler"])
        ckpt = read_torch(args.from_fogc)[1]
        say("loaded %s (step %d)" % (args.from_fogc, start))
    batches = Batches(args, rank, world, device)
    if sampler_state is not None:
        batches.sampler.restore(sampler_state)
    model, parallel = wrap(model, args, world, device)
    optimizer = make_optimizer(model, peak, fused=device.type == "cuda" and parallel != "fsdp2")
    if ckpt is not None:
        if parallel == "fsdp2":
            say("note: AdamW moments are not loaded under FSDP2 (sharded state); weights, step and sampler are")
        else:
            load_fogc_moments(optimizer, model, ckpt, start)
    if args.compile:
        model = torch.compile(model)
    say("%s: %d parameters, %s, %d rank(s) (%s%s), global batch %d x %d, steps %d..%d" % (
        CONFIG["name"], sum(p.numel() for p in unwrap(model).parameters()), args.precision, world, parallel,
        ", " + dist.get_backend() if world > 1 else "", args.batch, args.seq_len, start + 1, args.steps))

    clip = TRAIN["optimizer"]["clip"]
    val_batches = batches.validation()
    window_t, window_tokens = time.time(), 0
    for step in range(start, args.steps):
        tokens, targets = batches.next()
        lr = schedule.learning_rate(sched, peak, step, args.steps)
        loss, gn = train_step(model, optimizer, tokens, targets, lr, clip)
        done = step + 1
        window_tokens += args.batch * args.seq_len
        is_eval = bool(val_batches) and (done % args.eval_every == 0 or done == args.steps)
        if done % args.log_every == 0 or done == args.steps or is_eval or done == start + 1:
            rec = {"step": done, "loss": _mean_over_ranks(loss, world), "lr": lr, "grad_norm": gn}
            if is_eval:
                with torch.no_grad():
                    rec["val_loss"] = sum(_mean_over_ranks(model(t, y), world) for t, y in val_batches) / len(val_batches)
            dt = time.time() - window_t
            rec["tokens_per_s"] = window_tokens / dt if dt > 0 else 0.0
            window_t, window_tokens = time.time(), 0
            say("step %d/%d  loss %.4f%s  lr %.2e  grad_norm %.3f  %.0f tok/s" % (
                done, args.steps, rec["loss"], "  val %.4f" % rec["val_loss"] if "val_loss" in rec else "", lr, gn, rec["tokens_per_s"]))
            if args.jsonl and rank == 0:
                with open(args.jsonl, "a") as f:
                    f.write(json.dumps(rec) + "\n")
        if not math.isfinite(float(loss)):
            raise SystemExit("train.py: training diverged: loss %s at step %d" % (float(loss), done))
    if args.save:
        if parallel == "fsdp2" or rank == 0:
            save_fogc_checkpoint(model, args.save, step=args.steps, total_steps=args.steps, seed=args.seed,
                                 sampler_state=batches.sampler.state(), optimizer=optimizer, write=rank == 0)
        say("wrote %s" % args.save)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
`;
