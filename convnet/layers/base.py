"""The Layer base class: the contract every layer keeps.

    layer.build(input_shape)            create parameters (shape without batch axis)
    y  = layer.forward(x, training)     compute the output, keep what backward needs
    dx = layer.backward(dy)             gradient w.r.t. the input; fills layer.grads
    layer.params / layer.grads          dicts of arrays with the same keys

`backward` overwrites `grads` (it never accumulates), so after one forward and one
backward, `grads` holds d(loss)/d(param) for that batch.

Subclasses write `_build`, `_forward`, `_backward` and `compute_output_shape`;
this base class does the checking (rank, channels, dtype, empty batch), the
optional activation that follows a Conv2D or Dense, and (de)serialisation.
"""

import copy
import re

import numpy as np

from .. import initializers
from .._checks import check_int, check_shape
from ..arrays import to_host
from ..backend import get_ops
from ..config import resolve_dtype
from .activations import activation_backward, activation_forward, check_activation
from .symbolic import Node, SymbolicTensor, is_symbolic

_name_counts = {}


def _snake(name):
    return re.sub(r"(?<=[a-z])([A-Z])", r"_\1", name).lower()


def unique_name(prefix):
    """Keras-style automatic names: conv2d, conv2d_1, conv2d_2, ..."""
    count = _name_counts.get(prefix, 0)
    _name_counts[prefix] = count + 1
    return prefix if count == 0 else f"{prefix}_{count}"


def shape_str(shape):
    """(N, 28, 28, 1) style text for error messages; None prints as N."""
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


class Layer:
    """Base class of all layers. See the module docstring for the contract."""

    #: expected rank of an input including the batch axis (None: any rank >= 2)
    input_rank = None
    #: set by Sequential while it back-propagates into its first layer with
    #: parameters, whose input gradient nothing uses: backward may return None
    skip_input_grad = False

    def __init__(self, name=None, dtype=None, input_shape=None, seed=None):
        self.name = name if name is not None else unique_name(_snake(type(self).__name__))
        owner = self.describe()
        if dtype is not None:
            try:
                dtype = resolve_dtype(dtype).name
            except TypeError as exc:
                raise TypeError(f"{owner}: dtype {dtype!r} is not a dtype ({exc})") from exc
            except ValueError as exc:
                raise ValueError(f"{owner}: dtype {exc}") from exc
        self._dtype_arg = dtype
        self.dtype = None
        if seed is not None:
            seed = check_int(seed, "seed", owner, low=0)
        if input_shape is not None:
            if not isinstance(input_shape, (tuple, list)):
                raise TypeError(f"{owner}: input_shape must be a tuple of ints (no batch axis), "
                                f"got {input_shape!r}")
            input_shape = check_shape(input_shape, "input_shape", owner)
        self.seed = seed
        self.rng = None
        self.activation = None
        self.built = False
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.output_shape = None
        self.params = {}
        self.grads = {}
        self.state = {}          # non-trainable arrays saved with the model (BatchNorm)
        self._y = None           # activation output kept for backward
        self._accepted = None    # (ops, type, shape, dtype) of the last input that passed the checks
        self.inbound_nodes = []  # one Node per call on symbolic tensors (functional models)

    # ----------------------------------------------------------------- build
    def build(self, input_shape, rng=None):
        """Create the parameters for inputs of shape `input_shape` (no batch axis).

        `rng` (a numpy Generator) draws the initial weights; by default one is
        made from the layer's `seed`.
        """
        input_shape = check_shape(input_shape, "input shape", self.describe())
        if self.input_rank is not None and len(input_shape) != self.input_rank - 1:
            raise ValueError(
                f"{self.describe()}: expected inputs of rank {self.input_rank} "
                f"{self._rank_hint()}, got input shape {shape_str((None, *input_shape))}"
            )
        self.dtype = resolve_dtype(self._dtype_arg)
        if rng is not None:
            self.rng = rng
        elif self.rng is None:
            self.rng = np.random.default_rng(self.seed)
        self.input_shape = input_shape
        self._build(input_shape)
        self.output_shape = tuple(self.compute_output_shape(input_shape))
        ops = get_ops()
        for key, value in self.params.items():
            self.params[key] = ops.asarray(value, dtype=self.dtype)
        for key, value in self.state.items():
            self.state[key] = ops.asarray(value, dtype=self.dtype)
        self.grads = {key: ops.xp.zeros_like(p) for key, p in self.params.items()}
        self.built = True
        return self

    def _build(self, input_shape):
        """Create self.params (numpy arrays); nothing to do for parameter-free layers."""

    def compute_output_shape(self, input_shape):
        """Output shape (no batch axis) for an input shape (no batch axis)."""
        return tuple(input_shape)

    def _rank_hint(self):
        return ""

    def describe(self):
        """How error messages name this layer: `Conv2D 'conv2d_1'`."""
        return f"{type(self).__name__} '{self.name}'"

    # --------------------------------------------------------------- forward
    def forward(self, x, training=False):
        """y = layer(x). Checks x, builds on first use, applies `activation`."""
        z = self.forward_logits(x, training)
        if self.activation is None:
            return z
        self._y = activation_forward(self.activation, z, inplace=True)
        return self._y

    def backward(self, dy):
        """dx = d(loss)/dx from dy = d(loss)/dy; writes d(loss)/d(param) to grads."""
        dy = self._check_grad(dy)
        if self.activation is not None:
            dy = activation_backward(self.activation, dy, self._activation_output())
        return self._backward(dy)

    def forward_logits(self, x, training=False):
        """The output before the activation (what a fused softmax-loss needs)."""
        return self._checked_forward(x, training)

    def _checked_forward(self, x, training, **options):
        """_forward(x, training, **options) after the input checks, noting the output
        shape that backward checks dy against."""
        x = self._check_input(x)
        self._to_backend()
        z = self._forward(x, training, **options)
        self._last_output_shape = tuple(z.shape)
        return z

    def _activation_output(self):
        """The activation's output from the last forward, which its backward needs."""
        if self._y is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        return self._y

    def backward_logits(self, dz):
        """backward() for a gradient taken w.r.t. the pre-activation output."""
        return self._backward(self._check_grad(dz))

    def __call__(self, x, training=False):
        """On arrays: forward(x). On symbolic tensors (cn.Input(...) or another
        layer's output): record a node of the graph and return its output tensor."""
        if is_symbolic(x):
            return self._call_symbolic(x)
        return self.forward(x, training=training)

    # ------------------------------------------------------ functional graphs
    def _call_symbolic(self, inputs):
        tensors = [inputs] if isinstance(inputs, SymbolicTensor) else list(inputs)
        shapes = self._symbolic_input_shapes(tensors)
        if not self.built:
            self.build(shapes)
        else:
            self.check_input_shape(shapes)
        node = Node(self, tensors)
        out_shape = self.compute_output_shape(shapes)
        node.outputs = [SymbolicTensor(out_shape, self.dtype.name, node,
                                       name=f"{self.name}/{node.call_index}")]
        self.inbound_nodes.append(node)
        return node.outputs[0]

    def _symbolic_input_shapes(self, tensors):
        """The (batch-less) input shape a call on `tensors` gives; one tensor here
        (merge layers take a list)."""
        if len(tensors) != 1:
            raise ValueError(f"{self.describe()}: expects one input tensor, got a list of "
                             f"{len(tensors)}; merge branches with Add(), Concatenate(), ...")
        return tuple(tensors[0].shape[1:])

    def check_input_shape(self, input_shape):
        """ValueError naming the layer if a built layer cannot take `input_shape`
        (no batch axis), e.g. when a shared layer is called on another shape."""
        spec = self.input_spec()
        if spec is None:
            return
        ok = len(spec) == len(input_shape) and all(s is None or s == d for s, d in zip(spec, input_shape))
        if not ok:
            raise ValueError(f"{self.describe()}: expected input shape {shape_str((None, *spec))}, "
                             f"got {shape_str((None, *input_shape))}")

    def _single_node(self, what):
        if not self.inbound_nodes:
            raise AttributeError(f"{self.describe()} has no {what} yet: it has not been called on a "
                                 "symbolic tensor (cn.Input(...)) nor added to a built model")
        if len(self.inbound_nodes) > 1:
            raise AttributeError(f"{self.describe()} has {len(self.inbound_nodes)} inbound nodes, so "
                                 f"its {what} is ambiguous; use get_{what}_at(node_index)")
        return self.inbound_nodes[0]

    @property
    def input(self):
        """The symbolic input of this layer's only call (a list for merge layers)."""
        return self.get_input_at(self._single_node("input").call_index)

    @property
    def output(self):
        """The symbolic output of this layer's only call, e.g. to build a feature
        extractor: cn.Model(inputs=model.inputs, outputs=[layer.output ...])."""
        return self.get_output_at(self._single_node("output").call_index)

    def get_input_at(self, node_index):
        inputs = self.inbound_nodes[node_index].inputs
        return inputs[0] if len(inputs) == 1 else list(inputs)

    def get_output_at(self, node_index):
        return self.inbound_nodes[node_index].outputs[0]

    def shared_view(self):
        """A twin of this layer that shares its weights (the same params, state and
        rng objects) but keeps its own saved activations and its own grads.

        A graph that calls one layer twice runs the second call on such a view, so
        each call's backward reads the activations of its own forward; the model
        then adds the views' grads into the layer's grads (the weights are used
        twice, so d loss / d W is the sum of both uses).
        """
        view = copy.copy(self)
        xp = get_ops().xp
        view.grads = {key: xp.zeros_like(p) for key, p in self.params.items()}
        view._accepted = None
        return view

    def _forward(self, x, training):
        raise NotImplementedError

    def _backward(self, dy):
        raise NotImplementedError

    # ------------------------------------------------------------- checking
    def input_spec(self):
        """The non-batch input shape this layer accepts; None entries are free."""
        return self.input_shape

    def _check_input(self, x):
        ops = get_ops()
        # the same kind of input as last time, already in the layer's dtype on
        # this backend, needs no checks (they cost ~4 us a layer: half of what a
        # batch-1 prediction spends outside the kernels)
        accepted = self._accepted
        if accepted is not None and accepted[0] is ops and type(x) is accepted[1] \
                and x.shape == accepted[2] and x.dtype == accepted[3] == self.dtype:
            return x
        x = self._check_new_input(x)
        self._accepted = None
        out = ops.asarray(x, dtype=self.dtype)
        if out is x:
            self._accepted = (ops, type(x), x.shape, x.dtype)
        return out

    def _check_new_input(self, x):
        """x as an array after the full checks of rank, shape and dtype (building
        the layer on first use); ValueError/TypeError naming the layer otherwise."""
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            try:
                x = np.asarray(x)
            except ValueError as exc:
                raise ValueError(f"{self.describe()}: input is not a rectangular array ({exc})") from exc
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{self.describe()}: empty batch, got input shape {tuple(x.shape)}")
        if self.input_rank is not None and x.ndim != self.input_rank:
            raise ValueError(
                f"{self.describe()}: expected input of rank {self.input_rank} "
                f"{self._rank_hint()}, got shape {tuple(x.shape)}"
            )
        if not self.built:
            self.build(x.shape[1:])
        spec = self.input_spec()
        if spec is not None:
            ok = len(spec) == x.ndim - 1 and all(
                s is None or s == d for s, d in zip(spec, x.shape[1:])
            )
            if not ok:
                raise ValueError(
                    f"{self.describe()}: expected input shape {shape_str((None, *spec))}, "
                    f"got {tuple(x.shape)}"
                )
        self._check_spatial(x.shape)
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{self.describe()}: expected a real numeric array, got dtype {x.dtype}")
        return x

    def _check_spatial(self, shape):
        """Hook for layers whose windows must fit inside the (padded) input."""

    def _check_grad(self, dy):
        if not self.built:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        expected = getattr(self, "_last_output_shape", None)
        kind = getattr(getattr(dy, "dtype", None), "kind", None)
        if kind is None:
            try:
                kind = np.asarray(dy).dtype.kind
            except ValueError as exc:
                raise ValueError(f"{self.describe()}: dy is not a rectangular array ({exc})") from exc
        if kind not in "fiub":
            raise TypeError(f"{self.describe()}: backward expected a real numeric dy, got dtype kind {kind!r}")
        dy = get_ops().asarray(dy, dtype=self.dtype)
        if expected is not None and tuple(dy.shape) != expected:
            raise ValueError(
                f"{self.describe()}: backward expected dy of shape {expected} "
                f"(the shape of the last output), got {tuple(dy.shape)}"
            )
        return dy

    def _to_backend(self):
        """Move parameters to the active backend's arrays if they are elsewhere."""
        ops = get_ops()
        for store in (self.params, self.grads, self.state):
            for key, value in store.items():
                if not ops.is_native(value):
                    store[key] = ops.asarray(to_host(value), dtype=self.dtype)

    # --------------------------------------------------------- serialisation
    def get_config(self):
        """Constructor arguments as a JSON-friendly dict (the layer's architecture)."""
        return {"name": self.name, "dtype": self._dtype_arg}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def count_params(self):
        return int(sum(int(np.prod(p.shape)) for p in self.params.values()))

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} output_shape={self.output_shape}>"


class KernelLayer(Layer):
    """What Conv2D and Dense share: a kernel W, an optional bias b (one per output
    channel) and an optional activation applied after  z = x * W + b."""

    def __init__(self, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        owner = self.describe()
        self.activation = check_activation(activation, owner)
        self.use_bias = bool(use_bias)
        initializers.get(kernel_initializer, owner)
        initializers.get(bias_initializer, owner)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    def _make_params(self, kernel_shape):
        """W of `kernel_shape` and, with use_bias, b with one entry per output (last axis)."""
        self.params["W"] = initializers.get(self.kernel_initializer)(kernel_shape, self.rng, self.dtype)
        if self.use_bias:
            self.params["b"] = initializers.get(self.bias_initializer)((kernel_shape[-1],), self.rng, self.dtype)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}
