"""How a network uses its parameters: as a crossbar matrix, or element-wise (digital by nature).

A layer outside the known ones (``Linear``, ``Conv``, the rewritten layers, norms, lookups) may
hold parameters of its own: ViT's class token and position embedding, ConvNeXt's layer scale,
T5's RMS norm weight, a user's custom projection. Whether such a parameter belongs on analog tiles
does not follow from the layer's class but from what the forward *does* with it: an operand of a
matrix product (``matmul``, ``linear``, ``bmm``, ``einsum`` with a contraction, a convolution) is
a weight matrix a crossbar would hold, while a parameter that is added, multiplied element by
element, normalised with, indexed or concatenated never meets a crossbar and stays in the digital
periphery.

:func:`parameter_uses` runs one forward pass on a sample batch under a
:class:`torch.overrides.TorchFunctionMode` that sees every torch call (functions, tensor methods,
operators, attribute reads) at the level the Python code makes it, and records which watched
parameters enter which operation, and as which operand. A parameter is followed through the
calls that only reshape, cast, slice or combine parameters among themselves (``expand``, ``.T``,
``to``, ``cat`` of parameters, a weight normalisation): the product that finally takes it is its
use. The first call that mixes it with the data flowing from the inputs is where it is used.

Why a recorded forward rather than reading the code (``torch.fx`` or ``torch.export``): tracing
needs the forward to be free of data-dependent Python control flow and of untraceable calls, which
HuggingFace and timm models are not in general, and reading a graph of ATen operations loses the
Python-level call (``F.linear`` becomes ``addmm`` with a transposed view). A sample forward runs
whatever the model runs, on the path the evaluation will take. Its limit: a parameter used only
on a path the sample does not take, or only inside code that bypasses torch's function dispatch,
is never seen; it is then reported as *unused*, and conversion refuses its layer with the options
(that is the "cannot be determined" case). A product written element-wise (``(x * w).sum(-1)``)
is recorded as element-wise use.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

#: Calls whose result is their parameter operands rearranged or cast (not a use of them).
_RESHAPING = frozenset(
    """view view_as reshape reshape_as transpose t permute expand expand_as contiguous to type float half
    double bfloat16 clone detach squeeze unsqueeze flatten unflatten __getitem__ narrow select split chunk
    unbind repeat tile movedim moveaxis swapaxes swapdims broadcast_to __get__ requires_grad_ cpu cuda""".split()
)

#: Calls that read metadata only.
_METADATA = frozenset(
    """size dim shape dtype device numel is_floating_point is_complex data_ptr stride is_contiguous ndim
    __len__ element_size nelement storage_offset get_device is_shared untyped_storage __hash__ __format__
    __repr__ __bool__ __index__ __int__ __float__ item tolist""".split()
)

#: Matrix products: which positional arguments (or keyword names) are matrix operands; the others
#: of these calls (a bias added to the product, an attention mask) are element-wise.
_PRODUCTS = {
    "linear": ((1,), ("weight",)),
    "bilinear": ((2,), ("weight",)),
    "addmm": ((1, 2), ("mat1", "mat2")),
    "addbmm": ((1, 2), ("batch1", "batch2")),
    "baddbmm": ((1, 2), ("batch1", "batch2")),
    "addmv": ((1, 2), ("mat", "vec")),
    "scaled_dot_product_attention": ((0, 1, 2), ("query", "key", "value")),
    **{name: ((1,), ("weight",)) for name in ("conv1d", "conv2d", "conv3d", "conv_tbc", "convolution")},
    **{f"conv_transpose{d}d": ((1,), ("weight",)) for d in (1, 2, 3)},
    **{
        name: ((0, 1), ("input", "other", "mat2", "vec", "tensor", "a", "b"))
        for name in ("matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mv", "dot", "vdot", "inner", "tensordot")
    },
}

#: The kinds of use of a parameter (:class:`ParameterUse`): an operand of a matrix product, only
#: element-wise, never seen.
MATRIX, ELEMENTWISE, UNUSED = "matrix", "element-wise", "unused"


@dataclass
class ParameterUse:
    """How the forward used one parameter: ``kind`` is :data:`MATRIX` (an operand of a matrix
    product somewhere), :data:`ELEMENTWISE` (only element-wise) or :data:`UNUSED` (never seen);
    ``operations`` names the calls that used it, in order of first use."""

    name: str
    shape: tuple[int, ...]
    matrix_operations: list[str] = field(default_factory=list)
    elementwise_operations: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        if self.matrix_operations:
            return MATRIX
        return ELEMENTWISE if self.elementwise_operations else UNUSED

    @property
    def operations(self) -> list[str]:
        return self.matrix_operations or self.elementwise_operations

    def describe(self) -> str:
        """e.g. ``class_token (1x1x8, element-wise: cat)``."""
        shape = "x".join(map(str, self.shape)) or "scalar"
        ops = f": {', '.join(self.operations)}" if self.operations else " in the sample forward"
        return f"{self.name} ({shape}, {self.kind}{ops})"


def _call_name(func) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


def _einsum_contracts(args, operand: int) -> bool:
    """Whether operand ``operand`` (0-based, among the tensors) of ``einsum(equation, ...)`` is
    contracted with another operand: an index of its subscripts is summed away and appears in
    another operand's subscripts."""
    equation = str(args[0]).replace(" ", "")
    inputs, _, output = equation.partition("->")
    terms = inputs.split(",")
    if operand >= len(terms):
        return True  # (an equation we cannot read: treat the parameter as a matrix, conservatively)
    letters = [set(re.sub(r"[^A-Za-z]", "", t)) for t in terms]
    if "->" not in equation:  # implicit output: the letters that appear once
        counts = {c: sum(c in s for s in letters) for c in set().union(*letters)}
        kept = {c for c, n in counts.items() if n == 1}
    else:
        kept = set(re.sub(r"[^A-Za-z]", "", output))
    others = set().union(*(s for i, s in enumerate(letters) if i != operand)) if len(letters) > 1 else set()
    return any(c not in kept and c in others for c in letters[operand])


class _UseRecorder(TorchFunctionMode):
    """Records, for each watched parameter, the calls that use it (see the module docstring)."""

    def __init__(
        self,
        watched: dict[int, tuple[Tensor, str]],
        inputs: Iterable[Tensor],
        owned: dict[int, tuple[Tensor, str, frozenset[int]]] | None = None,
    ):
        super().__init__()
        # tensors that stand for watched parameters: id -> (tensor, names); the tensor is held, so
        # that its id cannot be reused by another tensor while recording
        self.derived: dict[int, tuple[Tensor, frozenset[str]]] = {
            id(p): (p, frozenset({name})) for p, name in watched.values()
        }
        # parameters of the layers that go onto tiles: name -> (layer path, ids of the modules
        # holding it); a use while none of them runs its forward bypasses the layer
        self.owners: dict[str, tuple[str, frozenset[int]]] = {}
        for p, path, holders in (owned or {}).values():
            name = f"{path}.<layer parameter>"
            self.derived.setdefault(id(p), (p, frozenset({name})))
            self.owners[name] = (path, holders)
        self.active: dict[int, int] = {}  # id of a module -> forwards of it running now
        self.bypassed: dict[str, list[str]] = {}  # layer path -> calls that used its parameters outside it
        self.read_outside: dict[str, list[str]] = {}  # layer path -> attributes of them read outside it
        self.data = weakref.WeakValueDictionary({id(t): t for t in inputs})  # tensors computed from the inputs
        self.uses: dict[str, tuple[list[str], list[str]]] = {}

    def _check_owners(self, names, call: str, found=None) -> frozenset[str]:
        """Record the layers whose parameters ``call`` uses outside their forward (in ``found``,
        by default :attr:`bypassed`); the other names."""
        found = self.bypassed if found is None else found
        rest = []
        for name in names:
            owner = self.owners.get(name)
            if owner is None:
                rest.append(name)
            elif not any(self.active.get(holder) for holder in owner[1]):
                calls = found.setdefault(owner[0], [])
                if call not in calls:
                    calls.append(call)
        return frozenset(rest)

    def _record(self, name: str, call: str, matrix: bool) -> None:
        matrix_ops, elementwise_ops = self.uses.setdefault(name, ([], []))
        target = matrix_ops if matrix else elementwise_ops
        if call not in target:
            target.append(call)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        call = _call_name(func)
        if call in _METADATA or (call == "__get__" and not isinstance(out, Tensor)):
            # A read of a layer's dtype or shape from outside it is not a use, but the analog layer
            # has no weight tensor to read: T5 guards its read of wo.weight.dtype with
            # isinstance(wo.weight, Tensor), HuggingFace's ViT does not. Noted for a trial forward.
            if self.owners and args and isinstance(args[0], Tensor) and id(args[0]) in self.derived:
                attribute = getattr(getattr(func, "__self__", None), "__name__", None) if call == "__get__" else None
                self._check_owners(self.derived[id(args[0])][1], attribute or f"{call}()", self.read_outside)
            return out
        operands = []  # (position or keyword, tensor)
        for i, a in enumerate(args):
            for leaf in tree_flatten(a)[0]:
                if isinstance(leaf, Tensor):
                    operands.append((i, leaf))
        for key, a in kwargs.items():
            for leaf in tree_flatten(a)[0]:
                if isinstance(leaf, Tensor):
                    operands.append((key, leaf))
        params = [(where, t, self.derived[id(t)][1]) for where, t in operands if id(t) in self.derived]
        if self.owners and params:
            # a layer's own parameters in a product made outside its forward (torchvision's Swin
            # passes qkv.weight to F.linear itself); inside its forward they are the layer's business
            params = [(w, t, self._check_owners(n, call)) for w, t, n in params]
        from_data = any(id(t) in self.data for _, t in operands)
        results = [t for t in tree_flatten(out)[0] if isinstance(t, Tensor)]
        if from_data:
            for t in results:
                self.data[id(t)] = t
        if not params:
            return out
        if not from_data:
            # parameters reshaped, cast or combined among themselves (with constants or buffers):
            # the result stands for them, and its use is theirs
            names = frozenset().union(*(n for _, _, n in params))
            for t in results:
                if id(t) not in self.derived or t is not self.derived[id(t)][0]:
                    self.derived[id(t)] = (t, names)
            return out
        if call in _RESHAPING:  # (a parameter sliced with indices computed from the data, say)
            for _, _, names in params:
                for name in names:
                    self._record(name, call, False)
            return out
        positions, keywords = _PRODUCTS.get(call, ((), ()))
        for where, t, names in params:
            if call == "einsum":  # einsum(equation, *operands) or einsum(equation, [operands])
                tensors = [x for x in tree_flatten(list(args[1:]))[0] if isinstance(x, Tensor)]
                index = next((i for i, x in enumerate(tensors) if x is t), len(tensors))
                matrix = _einsum_contracts(args, index)
            elif call in ("chain_matmul", "multi_dot"):
                matrix = True
            else:
                matrix = where in positions or where in keywords
            for name in names:
                self._record(name, call, matrix)
        return out


def call_model(model: nn.Module, inputs):
    """``model(inputs)``, as the evaluation calls it; a dict (HuggingFace's ``input_ids``,
    ``attention_mask``, ...) is passed as keywords."""
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(inputs)


def sample_of(inputs, size: int = 2):
    """The first ``size`` samples of a batch of inputs (a tensor, or a dict/tuple of tensors), so
    that the recorded forward stays cheap."""
    if isinstance(inputs, Tensor):
        return inputs[:size] if inputs.dim() > 0 else inputs
    if isinstance(inputs, dict):
        return {k: sample_of(v, size) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(sample_of(v, size) for v in inputs)
    return inputs


@dataclass
class Recording:
    """What one recorded forward saw: ``uses`` of the watched parameters by name, and
    ``bypassed``: the layers (by path) whose parameters were used while the layer's own forward
    was not running, with the calls that used them; ``read_outside``: the layers whose parameters'
    attributes (dtype, shape) were read from outside them, with the calls that read them."""

    uses: dict[str, ParameterUse]
    bypassed: dict[str, list[str]]
    read_outside: dict[str, list[str]] = field(default_factory=dict)


def record_uses(
    model: nn.Module, example_inputs, names: Iterable[str], layers: dict[str, nn.Module] | None = None
) -> Recording:
    """How ``model``'s forward on ``example_inputs`` uses each parameter in ``names`` (dotted
    names, as ``model.named_parameters()`` gives them), and which of ``layers`` (path -> module:
    the layers that go onto tiles) have their parameters used from outside their own forward; in
    eval mode and without gradients (the model's mode is restored afterwards)."""
    named = dict(model.named_parameters(remove_duplicate=False))
    wanted = list(dict.fromkeys(names))
    watched = {id(named[n]): (named[n], n) for n in wanted}
    holders: dict[int, set[int]] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            holders.setdefault(id(p), set()).add(id(module))
    owned = {
        id(p): (p, path, frozenset(holders[id(p)]))
        for path, layer in (layers or {}).items()
        for p in layer.parameters(recurse=False)
    }
    inputs = [t for t in tree_flatten(example_inputs)[0] if isinstance(t, Tensor)]
    recorder = _UseRecorder(watched, inputs, owned)
    hooks = []
    watched_holders = set().union(*(held for _, _, held in owned.values()))
    for module in model.modules():
        if id(module) in watched_holders:

            def enter(m, *_):
                recorder.active[id(m)] = recorder.active.get(id(m), 0) + 1

            def leave(m, *_):
                recorder.active[id(m)] -= 1

            hooks.append(module.register_forward_pre_hook(enter))
            hooks.append(module.register_forward_hook(leave, always_call=True))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), recorder:
            call_model(model, example_inputs)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    # a parameter shared under several names is watched under the one its id maps to
    by_id = {id(named[n]): watched[id(named[n])][1] for n in wanted}
    uses = {}
    for n in wanted:
        matrix_ops, elementwise_ops = recorder.uses.get(by_id[id(named[n])], ([], []))
        uses[n] = ParameterUse(n, tuple(named[n].shape), list(matrix_ops), list(elementwise_ops))
    return Recording(uses, dict(recorder.bypassed), dict(recorder.read_outside))


def parameter_uses(model: nn.Module, example_inputs, names: Iterable[str]) -> dict[str, ParameterUse]:
    """:func:`record_uses`' ``uses`` alone."""
    return record_uses(model, example_inputs, names).uses
