"""The NumPy references of the merging layers against expectations written here: explicit
``[:, None, :]`` broadcasts, slice assignment for Concatenate, einsum strings and
per-sample loops for Dot, norms by hand, and the mask rules of each Keras version
spelled out position by position. Plus output shapes, configs and Keras 2.2 JSON."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.layers import (
    Add,
    Average,
    Concatenate,
    Dot,
    Input,
    Masking,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    dot,
    maximum,
    minimum,
    multiply,
    subtract,
)
from layerserve.models import Model, model_from_json
from layerserve.serialization import keras_semantics

RTOL, ATOL = 1e-5, 1e-6
ELEMENTWISE = (Add, Subtract, Multiply, Average, Maximum, Minimum)
K2, K33, K3 = "2.2.4", "3.3.3", "3.15.1"


def normal(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def close(got, want):
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# ---- element-wise values -------------------------------------------------------------


def test_two_and_three_inputs_of_one_shape(rng):
    a, b, c = (normal(rng, 4, 3, 2) for _ in range(3))
    close(Add()([a, b, c]), a + b + c)
    close(Subtract()([a, b]), a - b)
    close(Multiply()([a, b, c]), a * b * c)
    close(Average()([a, b]), (a + b) / 2)
    close(Average()([a, b, c]), (a + b + c) / 3)
    larger = np.where(a > b, a, b)
    close(Maximum()([a, b, c]), np.where(larger > c, larger, c))
    close(Minimum()([a, b]), np.where(a < b, a, b))


def test_lower_rank_inputs_get_axes_after_the_batch_axis(rng):
    """(N, C) with (N, T, C) and T == N: NumPy's own alignment would run (pairing the
    batch with T) and be wrong; Keras inserts the axis after the batch axis."""
    n = 5
    a, b, c = normal(rng, n, 3), normal(rng, n, n, 3), normal(rng, n, 2, n, 3)
    close(Add()([a, b]), a[:, None, :] + b)
    close(Subtract()([a, b]), a[:, None, :] - b)
    close(Subtract()([b, a]), b - a[:, None, :])
    close(Multiply()([c, a, b]), c * a[:, None, None, :] * b[:, None, :, :])
    close(Maximum()([a, c]), np.maximum(a[:, None, None, :], c))
    close(Average()([b, c, a]), (b[:, None] + c + a[:, None, None]) / 3)


def test_size_one_axes_broadcast(rng):
    a, b = normal(rng, 3, 4, 1), normal(rng, 3, 1, 5)
    close(Add()([a, b]), a + b)
    assert Add().compute_output_shape([(None, 4, 1), (None, 1, 5)]) == (None, 4, 5)


def test_average_of_integers_is_float32():
    a = np.array([[1, 2]], dtype="int32")
    out = Average()([a, a + 1])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1.5, 2.5]])


def test_float64_inputs_compute_in_the_layer_dtype(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    out = Add()([a, b])
    assert out.dtype == np.float32
    close(out, a.astype("float32") + b.astype("float32"))
    assert Add(dtype="float64")([a, b]).dtype == np.float64


def test_functional_forms_build_the_layers(rng):
    x, y = Input((3,)), Input((3,))
    for function, cls in [
        (add, Add),
        (subtract, Subtract),
        (multiply, Multiply),
        (average, Average),
        (maximum, Maximum),
        (minimum, Minimum),
    ]:
        assert isinstance(function([x, y]).history[0], cls)
    assert concatenate([x, y], axis=1).history[0].axis == 1
    layer = dot([x, y], axes=1, normalize=True).history[0]
    assert (layer.axes, layer.normalize) == (1, True)


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    ranks=st.lists(st.integers(0, 3), min_size=2, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_elementwise_broadcast_property(sizes, ranks, seed):
    """Each input keeps the last ``rank`` of the full non-batch sizes, some set to 1;
    expected: every input reshaped to full rank by hand, then the formula."""
    rng = np.random.default_rng(seed)
    ranks = [min(rank, len(sizes)) for rank in ranks]
    arrays, reshaped = [], []
    for rank in ranks:
        kept = [d if rng.random() < 0.7 else 1 for d in sizes[len(sizes) - rank :]]
        array = normal(rng, 2, *kept)
        arrays.append(array)
        reshaped.append(array.reshape(2, *([1] * (max(ranks) - rank)), *kept))
    expected = {
        Add: sum(reshaped[1:], reshaped[0]),
        Multiply: math.prod(reshaped[1:], start=reshaped[0]),
        Maximum: np.maximum.reduce(np.broadcast_arrays(*reshaped)),
        Average: sum(reshaped[1:], reshaped[0]) / len(reshaped),
    }
    for cls, want in expected.items():
        layer = cls()
        got = layer(arrays)
        close(got, np.broadcast_to(want, got.shape))
        assert layer.compute_output_shape([a.shape for a in arrays]) == got.shape


# ---- masks and masked values, per Keras version --------------------------------------


def masked_pair(rng):
    """Values (2, 4, 2) and masks (2, 4) covering every combination of masked inputs."""
    a, b, c = (normal(rng, 2, 4, 2) for _ in range(3))
    ma = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], bool)
    mb = np.array([[1, 0, 1, 0], [0, 0, 1, 1]], bool)
    mc = np.array([[0, 1, 1, 0], [1, 1, 0, 0]], bool)
    return (a, b, c), (ma, mb, mc)


def run(cls, version, arrays, masks, **kwargs):
    with keras_semantics(version):
        layer = cls(**kwargs)
    return layer.run(list(arrays), mask=list(masks))


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_keras2_ands_the_masks_present_and_ignores_them_in_values(cls, rng):
    (a, b, c), (ma, mb, mc) = masked_pair(rng)
    arrays, masks = ((a, b), (ma, mb)) if cls is Subtract else ((a, b, c), (ma, None, mc))
    out, mask = run(cls, K2, arrays, masks)
    close(out, cls()(list(arrays)))
    np.testing.assert_array_equal(mask, ma & mb if cls is Subtract else ma & mc)
    assert run(cls, K2, arrays, [None] * len(arrays))[1] is None


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_keras3_before_3_4_drops_the_masks(cls, rng):
    (a, b, _), (ma, mb, _) = masked_pair(rng)
    out, mask = run(cls, K33, (a, b), (ma, mb))
    assert mask is None
    close(out, cls()([a, b]))


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_keras3_ors_the_masks_and_none_when_an_input_has_none(cls, rng):
    (a, b, c), (ma, mb, mc) = masked_pair(rng)
    np.testing.assert_array_equal(run(cls, K3, (a, b), (ma, mb))[1], ma | mb)
    assert run(cls, K3, (a, b), (ma, None))[1] is None
    if cls is not Subtract:
        np.testing.assert_array_equal(run(cls, K3, (a, b, c), (ma, mb, mc))[1], ma | mb | mc)


@pytest.mark.parametrize("cls", (Add, Subtract, Average))
def test_keras3_sums_ignore_the_masks(cls, rng):
    (a, b, _), (ma, mb, _) = masked_pair(rng)
    close(run(cls, K3, (a, b), (ma, mb))[0], cls()([a, b]))


@pytest.mark.parametrize(("cls", "reduce"), [(Maximum, np.maximum), (Minimum, np.minimum)])
def test_keras3_extrema_over_the_unmasked_inputs(cls, reduce, rng):
    """The max (min) of the inputs unmasked at a position; where all are masked, the
    first input's value; an input without a mask counts as unmasked everywhere."""
    (a, b, c), (ma, mb, mc) = masked_pair(rng)
    out, _ = run(cls, K3, (a, b, c), (ma, mb, mc))
    expected = np.empty_like(a)
    for n, t in np.ndindex(2, 4):
        kept = [x[n, t] for x, m in ((a, ma), (b, mb), (c, mc)) if m[n, t]]
        expected[n, t] = reduce.reduce(kept) if kept else a[n, t]
    close(out, expected)
    out, _ = run(cls, K3, (a, b), (ma, None))
    expected = np.where(ma[..., None], reduce(a, b), b)
    close(out, expected)


def test_keras3_multiply_counts_masked_positions_as_one(rng):
    (a, b, c), (ma, mb, mc) = masked_pair(rng)
    out, _ = run(Multiply, K3, (a, b, c), (ma, mb, mc))
    expected = np.empty_like(a)
    for n, t in np.ndindex(2, 4):
        kept = [x[n, t] for x, m in ((a, ma), (b, mb), (c, mc)) if m[n, t]]
        expected[n, t] = np.prod(kept, axis=0) if kept else 0.0  # all masked: zero
    close(out, expected)
    # An input without a mask: masked positions still count as one, nothing is zeroed.
    out, _ = run(Multiply, K3, (a, b), (ma, None))
    close(out, np.where(ma[..., None], a, 1.0) * b)


def test_keras3_values_ignore_the_mask_of_an_input_given_axes(rng):
    """Keras inserts the axes into a new tensor, which carries no mask."""
    a, b = normal(rng, 1, 3, 2), normal(rng, 1, 2)
    ma = np.array([[1, 0, 1]], bool)
    mb = np.array([False])
    out, _ = run(Maximum, K3, (a, b), (ma, mb))
    close(out, np.maximum(np.where(ma[..., None], a, b[:, None]), b[:, None]))


def test_keras3_masks_of_different_ranks_broadcast_as_numpy_does(rng):
    """Keras 3 ORs an (N, T) mask with an (N,) one by NumPy rules, against the batch
    axis: batch 1 works, and so does (wrongly, but as Keras) batch == T."""
    a, b = normal(rng, 1, 3, 2), normal(rng, 1, 2)
    ma, mb = np.array([[1, 0, 0]], bool), np.array([True])
    np.testing.assert_array_equal(run(Add, K3, (a, b), (ma, mb))[1], [[True, True, True]])
    ma, mb = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]], bool), np.array([False, False, True])
    _, mask = run(Add, K3, (normal(rng, 3, 3, 2), normal(rng, 3, 2)), (ma, mb))
    np.testing.assert_array_equal(mask, ma | mb[None, :])  # sample n's mask meets step t
    with pytest.raises(ValueError, match="Incompatible shapes for broadcasting"):
        masks = (np.ones((2, 3), bool), np.ones(2, bool))
        run(Add, K3, (normal(rng, 2, 3, 2), normal(rng, 2, 2)), masks)


@pytest.mark.parametrize(
    ("version", "axis", "expected"),
    [
        # Along the last axis: Keras 2 ANDs (the unmasked input's all-True piece too),
        # Keras 3 ORs, and an unmasked input makes every position True.
        (K2, -1, lambda ma, mc: ma),
        (K3, -1, lambda ma, mc: np.ones_like(ma)),
        (K33, -1, None),
        # Along the steps: the pieces are concatenated.
        (K2, 1, lambda ma, mc: np.concatenate([ma, np.ones_like(mc)], axis=1)),
        (K3, 1, lambda ma, mc: np.concatenate([ma, np.ones_like(mc)], axis=1)),
    ],
)
def test_concatenate_mask_with_an_unmasked_input(version, axis, expected, rng):
    a = normal(rng, 2, 4, 1)
    c = normal(rng, 2, 4, 1)
    (_, _, _), (ma, _, mc) = masked_pair(rng)
    out, mask = run(Concatenate, version, (a, c), (ma, None), axis=axis)
    close(out, np.concatenate([a, c], axis=axis))
    if expected is None:
        assert mask is None
    else:
        np.testing.assert_array_equal(mask, expected(ma, mc))


@pytest.mark.parametrize(("version", "combine"), [(K2, np.logical_and), (K3, np.logical_or)])
def test_concatenate_masks_along_the_last_axis(version, combine, rng):
    (a, b, _), (ma, mb, _) = masked_pair(rng)
    _, mask = run(Concatenate, version, (a, b), (ma, mb))
    np.testing.assert_array_equal(mask, combine(ma, mb))
    _, mask = run(Concatenate, version, (a, b), (ma, mb), axis=-2)
    np.testing.assert_array_equal(mask, np.concatenate([ma, mb], axis=1))


def test_keras3_concatenate_unmasked_input_with_features_along_steps(rng):
    """Keras 2 cannot build this ((N, T, 1) and (N, T, 3) pieces); Keras 3 can."""
    a, c = normal(rng, 2, 4, 3), normal(rng, 2, 2, 3)
    ma = np.array([[1, 0, 1, 0], [0, 0, 1, 1]], bool)
    _, mask = run(Concatenate, K3, (c, a), (None, ma), axis=1)
    np.testing.assert_array_equal(mask, np.concatenate([np.ones((2, 2), bool), ma], axis=1))
    with pytest.raises(ValueError, match="incompatible shapes"):
        run(Concatenate, K2, (c, a), (None, ma), axis=1)


@pytest.mark.parametrize("version", [K2, K33, K3])
def test_dot_has_no_output_mask(version, rng):
    (a, b, _), (ma, mb, _) = masked_pair(rng)
    out, mask = run(Dot, version, (a, b), (ma, mb), axes=2)
    assert mask is None
    close(out, np.einsum("ntd,nsd->nts", a, b))


def test_masks_flow_through_a_model_by_version(rng):
    """Masking -> Add: the model's output mask, and Add's role in a downstream mask."""
    x = np.zeros((2, 3, 2), "float32")
    x[:, :, 0] = [[1, 0, 2], [0, 0, 3]]
    y = np.zeros((2, 3, 2), "float32")
    y[:, :, 1] = [[0, 4, 5], [0, 6, 0]]
    mx, my = x.any(-1), y.any(-1)
    for version, expected in [(K2, mx & my), (K33, None), (K3, mx | my)]:
        with keras_semantics(version):
            a, b = Input((3, 2)), Input((3, 2))
            model = Model([a, b], Add()([Masking()(a), Masking()(b)]))
        mask = model.compute_mask([x, y])
        if expected is None:
            assert mask is None and model.outputs[0].mask is None
        else:
            np.testing.assert_array_equal(mask, expected)
            assert model.outputs[0].mask.shape == (None, 3)


# ---- Concatenate --------------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, 2, 3, -1, -2, -3, 0])
def test_concatenate_by_slice_assignment(axis, rng):
    a, b, c = normal(rng, 2, 3, 4, 5), normal(rng, 2, 3, 4, 5), normal(rng, 2, 3, 4, 5)
    position = axis % 4
    shape = list(a.shape)
    shape[position] *= 3
    expected = np.empty(shape, "float32")
    size = a.shape[position]
    for i, x in enumerate((a, b, c)):
        index = [slice(None)] * 4
        index[position] = slice(i * size, (i + 1) * size)
        expected[tuple(index)] = x
    layer = Concatenate(axis=axis)
    got = layer([a, b, c])
    close(got, expected)
    symbolic = [(None, 3, 4, 5)] * 3
    want = (None, *shape[1:]) if position else (None, 3, 4, 5)
    assert layer.compute_output_shape(symbolic) == want


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    axis_sizes=st.lists(st.integers(0, 3), min_size=2, max_size=4),
    axis_seed=st.integers(0, 100),
    negative=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_concatenate_property(sizes, axis_sizes, axis_seed, negative, seed):
    """Any rank, axis (negative too) and count of inputs, some empty along the axis:
    each input lands in its own slice, in order."""
    rng = np.random.default_rng(seed)
    rank = len(sizes) + 1
    position = 1 + axis_seed % len(sizes)
    shapes = [[3, *sizes] for _ in axis_sizes]
    for shape, size in zip(shapes, axis_sizes, strict=True):
        shape[position] = size
    arrays = [normal(rng, *shape) for shape in shapes]
    layer = Concatenate(axis=position - rank if negative else position)
    got = layer(arrays)
    start = 0
    for array in arrays:
        index = [slice(None)] * rank
        index[position] = slice(start, start + array.shape[position])
        close(got[tuple(index)], array)
        start += array.shape[position]
    assert got.shape[position] == start
    assert layer.compute_output_shape([a.shape for a in arrays]) == got.shape


def test_concatenate_unknown_sizes_stay_unknown():
    layer = Concatenate(axis=1)
    assert layer.compute_output_shape([(None, None, 3), (None, 2, 3)]) == (None, None, 3)
    assert layer.compute_output_shape([(None, 4, None), (None, 2, 3)]) == (None, 6, None)


# ---- Dot ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "axes", "equation"),
    [
        (((6,), (6,)), 1, "nk,nk->n"),
        (((6,), (6,)), -1, "nk,nk->n"),
        (((3, 5), (4, 3)), (1, 2), "nkx,nyk->nxy"),
        (((3, 5), (4, 3)), (-2, -1), "nkx,nyk->nxy"),
        (((4, 3), (4, 3)), -1, "nxk,nyk->nxy"),
        (((4, 3), (4, 3)), 1, "nkx,nky->nxy"),
        (((3,), (3, 5)), (1, 1), "nk,nky->ny"),
        (((5, 3), (3,)), (2, 1), "nxk,nk->nx"),
        (((2, 3, 5), (3, 5)), (3, 2), "nabk,nyk->naby"),
        (((2, 3, 5), (3, 5, 4)), (2, 1), "nakb,nkyz->nabyz"),
    ],
)
def test_dot_against_einsum(shapes, axes, equation, rng):
    x, y = normal(rng, 3, *shapes[0]), normal(rng, 3, *shapes[1])
    with keras_semantics(K3):  # Keras before 2.2.5 computed rank > 3 otherwise
        layer = Dot(axes=axes)
    want = np.einsum(equation, x.astype("float64"), y.astype("float64"))
    if want.ndim == 1:
        want = want[:, None]
    got = layer([x, y])
    close(got, want)
    assert layer.compute_output_shape([(None, *shapes[0]), (None, *shapes[1])]) == (
        None,
        *want.shape[1:],
    )


@pytest.mark.parametrize(
    ("version", "floor"), [(K2, 1e-6), ("3.0.0", math.sqrt(1e-7)), ("3.0.5", 1e-7), (K3, 1e-7)]
)
def test_dot_normalize_floors_the_norm_by_version(version, floor, rng):
    """Cosine of ordinary vectors; tiny vectors are divided by the floor instead."""
    x, y = normal(rng, 4, 5), normal(rng, 4, 5)
    with keras_semantics(version):
        layer = Dot(axes=1, normalize=True)
    cosine = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    close(layer([x, y])[:, 0], cosine)
    tiny_x, tiny_y = x * 1e-9, y * 1e-9
    expected = (tiny_x / floor * tiny_y / floor).sum(1)
    np.testing.assert_allclose(layer([tiny_x, tiny_y])[:, 0], expected, rtol=1e-4)


def test_dot_normalize_along_each_inputs_own_axis(rng):
    x, y = normal(rng, 2, 3, 4), normal(rng, 2, 5, 3)
    got = Dot(axes=(1, 2), normalize=True)([x, y])
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=2, keepdims=True)
    close(got, np.einsum("nkx,nyk->nxy", xn, yn))


@settings(max_examples=25, deadline=None)
@given(
    x_rest=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    y_rest=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    k=st.integers(1, 4),
    positions=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    negative=st.tuples(st.booleans(), st.booleans()),
    seed=st.integers(0, 2**16),
)
def test_dot_axes_property(x_rest, y_rest, k, positions, negative, seed):
    """Per sample, the sum over the contracted axis, by explicit loops over the rest."""
    rng = np.random.default_rng(seed)
    px, py = positions[0] % (len(x_rest) + 1), positions[1] % (len(y_rest) + 1)
    x_shape = [*x_rest[:px], k, *x_rest[px:]]
    y_shape = [*y_rest[:py], k, *y_rest[py:]]
    x, y = normal(rng, 2, *x_shape), normal(rng, 2, *y_shape)
    ax, ay = px + 1, py + 1
    axes = (
        ax - len(x_shape) - 1 if negative[0] else ax,
        ay - len(y_shape) - 1 if negative[1] else ay,
    )
    with keras_semantics(K3):
        layer = Dot(axes=axes)
    got = layer([x, y])
    assert layer.compute_output_shape([x.shape, y.shape]) == got.shape
    xm, ym = np.moveaxis(x, ax, -1), np.moveaxis(y, ay, 1)
    want = np.zeros((2, *xm.shape[1:-1], *ym.shape[2:]))
    for index in np.ndindex(*want.shape):
        n, xi, yi = index[0], index[1 : 1 + xm.ndim - 2], index[1 + xm.ndim - 2 :]
        want[index] = sum(float(xm[(n, *xi, j)]) * float(ym[(n, j, *yi)]) for j in range(k))
    if want.ndim == 1:
        want = want[:, None]
    close(got, want)


def test_dot_of_an_empty_batch(rng):
    got = Dot(axes=(1, 2))([normal(rng, 0, 3, 4), normal(rng, 0, 2, 3)])
    assert got.shape == (0, 4, 2)


# ---- configs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer",
    [
        *(cls(name=f"m_{cls.__name__}") for cls in ELEMENTWISE),
        Concatenate(axis=2, name="cat"),
        Dot(axes=(1, -1), normalize=True, name="dot_pair"),
        Dot(axes=-2, name="dot_int"),
    ],
    ids=lambda layer: layer.name,
)
def test_config_round_trips(layer):
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    again = type(layer).from_config(config)
    assert again.get_config() == config


def test_keras2_json_loads_with_and_semantics():
    """A Keras 2.2.4 functional config: Concatenate's ``axis``, Dot's ``axes`` and
    ``normalize``, and merges given several inbound tensors."""

    def layer(cls, name, config, inbound):
        return {
            "name": name,
            "class_name": cls,
            "config": {"name": name, "trainable": True, **config},
            "inbound_nodes": [[[i, 0, 0, {}] for i in inbound]] if inbound else [],
        }

    def entry(name):
        return {
            "name": name,
            "class_name": "InputLayer",
            "config": {
                "batch_input_shape": [None, 3, 2],
                "dtype": "float32",
                "sparse": False,
                "name": name,
            },
            "inbound_nodes": [],
        }

    document = {
        "class_name": "Model",
        "keras_version": "2.2.4",
        "backend": "tensorflow",
        "config": {
            "name": "model_1",
            "layers": [
                entry("input_1"),
                entry("input_2"),
                layer("Masking", "masking_1", {"mask_value": 0.0}, ["input_1"]),
                layer("Masking", "masking_2", {"mask_value": 0.0}, ["input_2"]),
                layer("Maximum", "maximum_1", {}, ["masking_1", "masking_2"]),
                layer("Concatenate", "concatenate_1", {"axis": 1}, ["masking_1", "masking_2"]),
                layer("Concatenate", "concatenate_2", {"axis": -1}, ["masking_1", "input_2"]),
                layer("Dot", "dot_1", {"axes": [2, 2], "normalize": True}, ["input_1", "input_2"]),
            ],
            "input_layers": [["input_1", 0, 0], ["input_2", 0, 0]],
            "output_layers": [
                ["maximum_1", 0, 0],
                ["concatenate_1", 0, 0],
                ["concatenate_2", 0, 0],
                ["dot_1", 0, 0],
            ],
        },
    }
    model = model_from_json(json.dumps(document))
    x = np.array([[[1, 2], [0, 0], [3, -1]]], "float32")
    y = np.array([[[0, 0], [-5, 1], [2, 2]]], "float32")
    (maxed, steps, features, dotted), (m_max, m_steps, m_features, m_dot) = model.run([x, y])
    close(maxed, np.maximum(x, y))
    np.testing.assert_array_equal(m_max, [[False, False, True]])
    close(steps, np.concatenate([x, y], axis=1))
    np.testing.assert_array_equal(m_steps, [[True, False, True, False, True, True]])
    close(features, np.concatenate([x, y], axis=2))
    np.testing.assert_array_equal(m_features, [[True, False, True]])
    xn = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-6)
    yn = y / np.maximum(np.linalg.norm(y, axis=2, keepdims=True), 1e-6)
    close(dotted, np.einsum("ntd,nsd->nts", xn, yn))
    assert m_dot is None
    assert model.get_layer("dot_1").axes == (2, 2)
