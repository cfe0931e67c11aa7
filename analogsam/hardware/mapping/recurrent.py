"""Recurrent layers onto tiles: ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` with their gate matrices in ``Linear`` children.

:class:`TiledRNN` holds, for each layer ``k`` and direction (``_reverse`` for the backward one),

- **analog**: ``ih_l{k}`` (input -> gates: ``weight_ih_l{k}``, ``bias_ih_l{k}``), ``hh_l{k}``
  (hidden -> gates: ``weight_hh_l{k}``, ``bias_hh_l{k}``) and, for an LSTM with ``proj_size``,
  ``hr_l{k}`` (``weight_hr_l{k}``, no bias), one ``nn.Linear`` each, the gates stacked along the
  outputs in torch's order (LSTM i, f, g, o; GRU r, z, n; RNN one);
- **digital**: the time loop, the gate non-linearities and the element-wise state updates. The GRU's
  hidden bias of the n gate stays inside the reset product, n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
  as torch computes it.

It is a drop-in replacement for the torch layer's forward: ``batch_first`` both ways, unbatched
inputs, ``PackedSequence`` inputs (each sequence stops at its own length; the output is packed the
same way), initial states ``h0`` / ``(h0, c0)`` and the returns ``(output, h_n)`` /
``(output, (h_n, c_n))`` with torch's shapes and layer-major, direction-minor order; bidirectional,
multi-layer, ``bias=False``, ``nonlinearity`` tanh or relu, ``proj_size``; inter-layer dropout in
training mode only. ``input -> gates`` is applied to every time step in one call (each input vector
is its own matrix-vector product on the tile, so this is the per-step product batched), ``hidden ->
gates`` once per step.

**Why not aihwkit's analog RNNs.** aihwkit 1.1.0's ``convert_to_analog`` maps ``Linear`` and
``Conv1d/2d/3d`` only (``aihwkit/nn/conversion.py``): it leaves an ``nn.LSTM`` digital. Its
``AnalogRNN`` (``aihwkit/nn/modules/rnn/``) builds each (layer, direction) from a cell with two
``AnalogLinear`` tiles, ``weight_ih`` (input -> 4H) and ``weight_hh`` (H -> 4H) with the gates
stacked i, f, g, o along the outputs (``AnalogLSTMCell``; ``AnalogGRUCell`` r, z, n with the
hidden bias inside the reset product; ``AnalogVanillaRNNCell`` tanh): the same tiles and the same
function as here. But it is a different layer to call: sequence-first only (batch-first input is
marked as still to do in its ``forward``), states as a list of per-layer (per-direction) tuples, no ``h_n``/``c_n``
tensors, no ``proj_size``, no ReLU RNN, no ``PackedSequence``, no unbatched input, so a network
written around ``nn.LSTM`` would not run with it in place. This module keeps torch's interface and
puts exactly that tile set, one ``Linear`` per (layer, direction, ih | hh), in front of aihwkit's
conversion, which turns each into an ``AnalogLinear`` that the fast engine replays exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from analogsam.errors import InvalidParameterError
from analogsam.hardware.mapping.base import Rewrite

#: Gates per recurrent mode (rows of weight_ih / weight_hh per hidden unit), in torch's mode names.
GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    """An ``nn.Linear`` holding copies of ``weight`` (out, in) and ``bias``, on their device and dtype."""
    out_features, in_features = weight.shape
    layer = nn.Linear(in_features, out_features, bias=bias is not None, device=weight.device, dtype=weight.dtype)
    layer.weight = nn.Parameter(weight.detach().clone(), requires_grad=weight.requires_grad)
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach().clone(), requires_grad=bias.requires_grad)
    return layer


class TiledRNN(nn.Module):
    """``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` with every gate matrix in an ``nn.Linear`` child (see the
    module docstring). Build it with :meth:`from_torch`."""

    def __init__(
        self,
        mode: str,
        cells: dict[str, nn.Linear],
        *,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        proj_size: int = 0,
    ):
        super().__init__()
        if mode not in GATES:
            raise InvalidParameterError(f"recurrent mode {mode!r} is not one of {sorted(GATES)}")
        if proj_size and mode != "LSTM":
            raise InvalidParameterError(f"proj_size={proj_size} is an LSTM option, not for {mode}")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional, self.proj_size = bidirectional, proj_size
        for name, layer in cells.items():
            self.add_module(name, layer)

    @classmethod
    def from_torch(cls, rnn: nn.RNNBase) -> TiledRNN:
        """The same recurrent layer, with copies of ``rnn``'s weights and its training flag."""
        suffixes = ("", "_reverse") if rnn.bidirectional else ("",)
        cells = {}
        for k in range(rnn.num_layers):
            for sfx in suffixes:
                for part in ("ih", "hh"):
                    bias = getattr(rnn, f"bias_{part}_l{k}{sfx}") if rnn.bias else None
                    cells[f"{part}_l{k}{sfx}"] = _linear(getattr(rnn, f"weight_{part}_l{k}{sfx}"), bias)
                if rnn.proj_size:
                    cells[f"hr_l{k}{sfx}"] = _linear(getattr(rnn, f"weight_hr_l{k}{sfx}"), None)
        module = cls(
            rnn.mode,
            cells,
            input_size=rnn.input_size,
            hidden_size=rnn.hidden_size,
            num_layers=rnn.num_layers,
            bias=rnn.bias,
            batch_first=rnn.batch_first,
            dropout=float(rnn.dropout),
            bidirectional=rnn.bidirectional,
            proj_size=rnn.proj_size,
        )
        return module.train(rnn.training)

    def flatten_parameters(self) -> None:
        """A no-op, so that forwards written for torch's layer (which call it for cuDNN) run: the
        weights live in ``Linear`` children, there is no flat weight buffer to compact."""

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _out_size(self) -> int:
        return self.proj_size or self.hidden_size

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, Tensor] | None = None):
        """The torch layer's forward: ``(output, h_n)``, or ``(output, (h_n, c_n))`` for an LSTM."""
        packed = isinstance(input, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(input)  # (T, N, F), sequences in the caller's order
            lengths = lengths.to(x.device)
            batched = True
        else:
            x, lengths, batched = input, None, input.dim() == 3
            if input.dim() not in (2, 3):
                raise InvalidParameterError(
                    f"{self.mode} input has {input.dim()} dimensions: pass (sequence, "
                    "batch, features), batch-first (batch, sequence, features) or "
                    "(sequence, features)"
                )
            x = x.transpose(0, 1) if batched and self.batch_first else (x if batched else x.unsqueeze(1))
        if x.shape[-1] != self.input_size:
            raise InvalidParameterError(
                f"{self.mode} input has {x.shape[-1]} features, the layer expects input_size={self.input_size}"
            )
        h0, c0 = self._initial_states(hx, x, batched)

        layer_input, h_n, c_n = x, [], []
        for k in range(self.num_layers):
            outputs = []
            for d, sfx in enumerate(("", "_reverse")[: self._directions]):
                i = k * self._directions + d
                out, h, c = self._run_direction(layer_input, lengths, k, sfx, h0[i], None if c0 is None else c0[i])
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
            if k < self.num_layers - 1 and self.dropout > 0:
                layer_input = F.dropout(layer_input, p=self.dropout, training=self.training)
        output, h_n = layer_input, torch.stack(h_n)
        c_n = torch.stack(c_n) if self.mode == "LSTM" else None

        if packed:
            output = self._packed_like(input, output)
        elif not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, ((h_n, c_n) if self.mode == "LSTM" else h_n)

    def _initial_states(self, hx, x: Tensor, batched: bool) -> tuple[Tensor, Tensor | None]:
        """(h0, c0) as (layers·directions, N, size) tensors, zeros where not given; c0 None unless LSTM."""
        n, states = x.shape[1], self.num_layers * self._directions
        shapes = [(states, n, self._out_size)] + ([(states, n, self.hidden_size)] if self.mode == "LSTM" else [])
        if hx is None:
            given = [None] * len(shapes)
        elif self.mode == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise InvalidParameterError("LSTM initial state: pass a tuple (h0, c0)")
            given = list(hx)
        else:
            if not isinstance(hx, Tensor):
                raise InvalidParameterError(f"{self.mode} initial state: pass one tensor h0")
            given = [hx]
        states_out = []
        for name, state, shape in zip(("h0", "c0"), given, shapes):
            if state is None:
                states_out.append(x.new_zeros(shape))
                continue
            expected = shape if batched else (shape[0], shape[2])
            if tuple(state.shape) != expected:
                raise InvalidParameterError(
                    f"{self.mode} initial state {name} has shape {tuple(state.shape)}, "
                    f"expected {expected} (layers*directions[, batch], size)"
                )
            states_out.append(state if batched else state.unsqueeze(1))
        return states_out[0], (states_out[1] if self.mode == "LSTM" else None)

    def _run_direction(self, x: Tensor, lengths: Tensor | None, k: int, sfx: str, h: Tensor, c: Tensor | None):
        """One layer in one direction over the whole sequence: (outputs (T, N, out), h_T, c_T).

        With ``lengths`` (a packed input) a sequence's state stops changing after its last step
        (forward) or starts changing at it (reverse), and its outputs beyond its length are 0.
        """
        ih, hh = getattr(self, f"ih_l{k}{sfx}"), getattr(self, f"hh_l{k}{sfx}")
        hr = getattr(self, f"hr_l{k}{sfx}") if self.proj_size else None
        gates_x = ih(x)  # analog, every time step at once
        steps = range(x.shape[0] - 1, -1, -1) if sfx else range(x.shape[0])
        outputs = [None] * x.shape[0]
        for t in steps:
            h_new, c_new = self._cell(gates_x[t], h, c, hh, hr)
            if lengths is None:
                h, c = h_new, c_new
                outputs[t] = h
            else:
                valid = (lengths > t).unsqueeze(1)
                h = torch.where(valid, h_new, h)
                c = None if c is None else torch.where(valid, c_new, c)
                outputs[t] = h_new.masked_fill(~valid, 0.0)
        return torch.stack(outputs), h, c

    def _cell(self, gates_x: Tensor, h: Tensor, c: Tensor | None, hh: nn.Linear, hr: nn.Linear | None):
        """One time step from the input's gate pre-activations ``gates_x`` and the previous state."""
        gates_h = hh(h)  # analog
        if self.mode == "LSTM":
            i, f, g, o = (gates_x + gates_h).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            return (h if hr is None else hr(h)), c  # hr: the projection, analog
        if self.mode == "GRU":
            x_r, x_z, x_n = gates_x.chunk(3, dim=-1)
            h_r, h_z, h_n = gates_h.chunk(3, dim=-1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
            return (1 - z) * n + z * h, None
        pre = gates_x + gates_h
        return (torch.tanh(pre) if self.mode == "RNN_TANH" else torch.relu(pre)), None

    @staticmethod
    def _packed_like(packed: PackedSequence, padded: Tensor) -> PackedSequence:
        """``padded`` (T, N, F), sequences in the caller's order, packed with ``packed``'s batch sizes and order."""
        if packed.sorted_indices is not None:
            padded = padded.index_select(1, packed.sorted_indices.to(padded.device))
        data = torch.cat([padded[t, : int(size)] for t, size in enumerate(packed.batch_sizes)])
        return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)


RECURRENT = Rewrite(
    name="recurrent",
    applies=lambda m: type(m) in (nn.LSTM, nn.GRU, nn.RNN),
    rewrite=TiledRNN.from_torch,
    description="input->gates and hidden->gates matrices analog, one Linear per layer, direction and "
    "ih|hh (and the LSTM projection); the time loop and gate non-linearities digital",
)
