"""Load a ``state_dict`` of the official PyTorch UniImb into our Flax variables.

A user with a model trained by the published code can evaluate it with ours: save its
``model.state_dict()`` as ``.npz`` (``np.savez(path, **{k: v.numpy() for k, v in
sd.items()})``; a ``param/`` prefix on every name, as in the golden files, is accepted),
build our model with the same configuration (``--preset reference``, the dataset's row) and
map the arrays with :func:`variables_from_state_dict` (or :func:`load_state_dict_npz`).

The mapping (torch name -> our path under ``params``, ``*`` = ``kernel``/``bias``)::

    alpha                         gate_out                    (sigmoid gate before the decoder)
    encoder.W{1,2,3}              encoder_ffn/w{1,2,3}/*       (SwiGLU FFN; weight transposed)
    decoder.W{1,2,3}              decoder_ffn/w{1,2,3}/*
    DBP.gamma / .alpha / .beta    dbp/gate_in / gate_ffn / gate_route
    DBP.norm1.scale               dbp/norm/scale
    DBP.FFN.W{1,2,3}              dbp/ffn/w{1,2,3}/*
    DBP.balopt.query / .value     dbp/routing/query / value/*
    DBP.balopt.key  [K, h, hd]    dbp/routing/keys [K, h, hd]
    DBP.balopt.emb  [1, h, K]     dbp/routing/emb [h, K]
    DBP.balopt.alpha / .beta      dbp/routing/alpha / beta [h, 1]
    embedding.Linear_RW           encoder/rwpe_in/*
    embedding.conv{i}.nn.0 / .3   encoder/layer_{i-1}/dense_0 / dense_1/*
    embedding.conv{i}.nn.1        encoder/layer_{i-1}/bn: weight -> scale, bias -> bias,
                                  running_mean / running_var -> batch_stats mean / var
    embedding.conps{i}            encoder/rwpe_layer_{i-1}   (same sub-names as conv)
    embedding.eigVmlp / eigSmlp   encoder/lap_pe/phi / psi/*  (LapPE, reference form)
    embedding.MLPbackbone         encoder/lap_pe/out/*
    aug.pertu.lin1 / lin2         perturbation/dense_0 / dense_1/*

A torch Linear stores ``weight [out, in]`` (``y = x W^T + b``); a Flax Dense ``kernel [in,
out]``: weights are transposed. Names the published forward never reads are accepted and
ignored: ``beta``, ``norm.scale``, ``DBP.delta``, BatchNorm ``num_batches_tracked``, the
GIN ``eps`` buffers (which must be 0, as our GIN layers assume), and the LapPE /
perturbation weights when our configuration has that part switched off (the published code
builds them regardless). Any other unknown name, a missing name, or a shape that does not
match our model raises :class:`~uniimb_jax.errors.ConfigError` naming the parameter.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Mapping, Union

import numpy as np

from uniimb_jax.errors import ConfigError

# Read by no published forward pass; stored only because a strict state_dict holds them.
_UNUSED_NAMES = ("beta", "norm.scale", "DBP.delta")
_UNUSED_PATTERNS = (re.compile(r".*\.num_batches_tracked$"),)
_GIN_EPS = re.compile(r"^embedding\.(conv|conps)\d+\.eps$")
# Built by the published model whether or not the configuration uses them.
_OPTIONAL_PREFIXES = {
    "lap_pe": ("embedding.eigVmlp.", "embedding.eigSmlp.", "embedding.MLPbackbone."),
    "perturbation": ("aug.pertu.",),
}

_FFN = {"encoder_ffn": "encoder", "decoder_ffn": "decoder"}
_DBP_GATES = {"gate_in": "DBP.gamma", "gate_ffn": "DBP.alpha", "gate_route": "DBP.beta"}
_LAP = {"phi": "embedding.eigVmlp", "psi": "embedding.eigSmlp", "out": "embedding.MLPbackbone"}
_GIN_SUB = {"dense_0": "nn.0", "dense_1": "nn.3", "bn": "nn.1"}
_DENSE_LEAF = {"kernel": "weight", "bias": "bias"}
_BN_LEAF = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _transpose(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _emb(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[-2:])  # [1, h, K] -> [h, K]


def _dense(prefix: str, leaf: str) -> tuple[str, Callable]:
    name = f"{prefix}.{_DENSE_LEAF[leaf]}"
    return name, (_transpose if leaf == "kernel" else _identity)


def torch_name(path: tuple[str, ...]) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """The official name of our leaf ``path`` (``("params"|"batch_stats", ...)``) and the
    function that turns the torch array into ours.

    Raises:
      ConfigError: for a path of ours the official model has no counterpart of (e.g. the
        corrected LapPE's ReLU form, a GCN/SAGE backbone, the GIN baseline's classifier).
    """
    col, *rest = path
    p = tuple(rest)
    if p == ("gate_out",):
        return "alpha", _identity
    if len(p) == 3 and p[0] in _FFN:
        return _dense(f"{_FFN[p[0]]}.W{p[1][-1]}", p[2])
    if p[:1] == ("dbp",):
        q = p[1:]
        if len(q) == 1 and q[0] in _DBP_GATES:
            return _DBP_GATES[q[0]], _identity
        if q == ("norm", "scale"):
            return "DBP.norm1.scale", _identity
        if len(q) == 3 and q[0] == "ffn":
            return _dense(f"DBP.FFN.W{q[1][-1]}", q[2])
        if q[:1] == ("routing",):
            r = q[1:]
            if len(r) == 2 and r[0] in ("query", "value"):
                return _dense(f"DBP.balopt.{r[0]}", r[1])
            if r == ("keys",):
                return "DBP.balopt.key", _identity
            if r == ("emb",):
                return "DBP.balopt.emb", _emb
            if r in (("alpha",), ("beta",)):
                return f"DBP.balopt.{r[0]}", _identity
    if p[:1] == ("encoder",):
        q = p[1:]
        if len(q) == 2 and q[0] == "rwpe_in":
            return _dense("embedding.Linear_RW", q[1])
        if len(q) == 3 and q[0] == "lap_pe" and q[1] in _LAP:
            return _dense(_LAP[q[1]], q[2])
        m = re.fullmatch(r"(layer|rwpe_layer)_(\d+)", q[0]) if q else None
        if m and len(q) == 3 and q[1] in _GIN_SUB:
            conv = "conv" if m.group(1) == "layer" else "conps"
            prefix = f"embedding.{conv}{int(m.group(2)) + 1}.{_GIN_SUB[q[1]]}"
            if q[1] == "bn":
                return f"{prefix}.{_BN_LEAF[q[2]]}", _identity
            return _dense(prefix, q[2])
    if p[:1] == ("perturbation",) and len(p) == 3:
        return _dense(f"aug.pertu.lin{int(p[1][-1]) + 1}", p[2])
    raise ConfigError(
        f"{col}/{'/'.join(p)} has no counterpart in the official UniImb state_dict; build the "
        "model with the reference preset (GIN backbone, lappe_form='reference')"
    )


def _leaves(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()):
    for name, child in tree.items():
        if isinstance(child, Mapping):
            yield from _leaves(child, prefix + (name,))
        else:
            yield prefix + (name,), child


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def variables_from_state_dict(
    state_dict: Mapping[str, Any], template: Mapping[str, Any], *,
    name_of: Callable[[tuple[str, ...]], tuple[str, Callable]] = torch_name,
    unused: Callable[[str], bool] = lambda name: False,
) -> dict[str, Any]:
    """Our variables ``{"params", "batch_stats"}`` holding the official ``state_dict``.

    Args:
      state_dict: official name -> array (numpy or anything ``np.asarray`` takes); a
        ``param/`` prefix on the names is stripped.
      template: variables of our model built with the matching configuration (from
        ``model.init``); they fix which names are needed and every shape and dtype.
      name_of: our leaf path -> (torch name, conversion): :func:`torch_name` for UniImb's
        model; another published model passes its own (:mod:`uniimb_jax.models.g2gnn_weights`).
      unused: names of that model's ``state_dict`` its forward pass never reads, skipped.

    Returns:
      A new variables dict with the template's structure, shapes and dtypes.

    Raises:
      ConfigError: a name the template needs is missing, a name is unknown, a shape does not
        match, or a GIN ``eps`` buffer is not 0.
    """
    sd = {
        (k[len("param/"):] if k.startswith("param/") else k): np.asarray(v)
        for k, v in state_dict.items()
    }
    out: dict[str, Any] = {}
    used: set[str] = set()
    for col in ("params", "batch_stats"):
        for path, leaf in _leaves(template.get(col, {}), (col,)):
            name, convert = name_of(path)
            if name not in sd:
                raise ConfigError(
                    f"state_dict has no {name!r}, needed for {'/'.join(path)} "
                    f"{tuple(np.shape(leaf))}"
                )
            value = convert(sd[name])
            if value.shape != tuple(np.shape(leaf)):
                raise ConfigError(
                    f"state_dict {name!r} has shape {tuple(sd[name].shape)}, which gives "
                    f"{value.shape} for {'/'.join(path)}; our model expects "
                    f"{tuple(np.shape(leaf))} (check the dataset's preset: features, classes, "
                    "prototypes, heads, RWPE width)"
                )
            _set(out, path, np.asarray(value, dtype=np.asarray(leaf).dtype))
            used.add(name)
    params = template.get("params", {})
    for name in sorted(set(sd) - used):
        if name in _UNUSED_NAMES or any(p.match(name) for p in _UNUSED_PATTERNS) or unused(name):
            continue
        if _GIN_EPS.match(name):
            if np.any(sd[name] != 0):
                raise ConfigError(
                    f"state_dict {name!r} = {sd[name].tolist()}: our GIN layers have eps = 0"
                )
            continue
        optional = [
            part for part, prefixes in _OPTIONAL_PREFIXES.items()
            if name.startswith(prefixes) and not _has_part(params, part)
        ]
        if optional:
            continue
        raise ConfigError(
            f"state_dict {name!r} {tuple(sd[name].shape)} has no counterpart in our model "
            "(an unknown name, or a part our configuration lacks)"
        )
    return out


def _has_part(params: Mapping[str, Any], part: str) -> bool:
    if part in params:
        return True
    return any(_has_part(v, part) for v in params.values() if isinstance(v, Mapping))


def load_state_dict_npz(
    path: Union[str, os.PathLike], template: Mapping[str, Any]
) -> dict[str, Any]:
    """:func:`variables_from_state_dict` of the arrays in ``path`` (``.npz``; keys without a
    ``param/`` prefix are read too, other prefixes such as ``input/`` are skipped when a
    ``param/`` one exists)."""
    with np.load(path, allow_pickle=False) as npz:
        names = list(npz.files)
        if any(n.startswith("param/") for n in names):
            names = [n for n in names if n.startswith("param/")]
        arrays = {n: npz[n] for n in names}
    try:
        return variables_from_state_dict(arrays, template)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def official_state_names(template: Mapping[str, Any]) -> dict[str, str]:
    """``{our path: official name}`` for every leaf of ``template`` (documentation, tests)."""
    out: dict[str, str] = {}
    for col in ("params", "batch_stats"):
        for path, _ in _leaves(template.get(col, {}), (col,)):
            out["/".join(path)] = torch_name(path)[0]
    return out


__all__ = [
    "variables_from_state_dict",
    "load_state_dict_npz",
    "official_state_names",
    "torch_name",
]

