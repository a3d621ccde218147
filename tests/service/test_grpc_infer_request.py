"""ModelInfer's request deserializer against protobuf's own parse of the same bytes: the
same fields (the raw contents as views of the received bytes, in order, never copied),
fields in any order and repeated, and bytes that are not a message refused with
protobuf's own error."""

import pytest
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.service.grpc.generated import grpc_service_pb2 as pb
from layerserve.service.grpc.infer_request import MAX_FIELDS, InferRequest, read_infer_request

names = st.text(max_size=12)
tensors = st.builds(
    lambda name, datatype, shape: pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=shape
    ),
    names,
    st.sampled_from(["FP32", "INT64", "BYTES", ""]),
    st.lists(st.integers(-1, 2**40), max_size=4),
)


@st.composite
def field_messages(draw: st.DrawFn) -> list[pb.ModelInferRequest]:
    """One-field messages: their serialisations, concatenated in any order, are one
    message with those fields (protobuf merges them, the last scalar wins)."""
    parts: list[pb.ModelInferRequest] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["name", "version", "id", "input", "output", "raw", "param"]))
        part = pb.ModelInferRequest()
        if kind == "name":
            part.model_name = draw(names)
        elif kind == "version":
            part.model_version = draw(names)
        elif kind == "id":
            part.id = draw(names)
        elif kind == "input":
            part.inputs.append(draw(tensors))
        elif kind == "output":
            part.outputs.add(name=draw(names))
        elif kind == "raw":
            # lengths on both sides of a one-byte length (127) and of a two-byte one
            part.raw_input_contents.append(draw(st.binary(max_size=300)))
        else:
            part.parameters[draw(names)].int64_param = draw(st.integers(-(2**63), 2**63 - 1))
        parts.append(part)
    return parts


def _without_raw(message: pb.ModelInferRequest) -> pb.ModelInferRequest:
    rest = pb.ModelInferRequest()
    rest.CopyFrom(message)
    rest.ClearField("raw_input_contents")
    return rest


@settings(max_examples=300, deadline=None)
@given(field_messages())
def test_a_request_reads_as_protobuf_parses_it(parts):
    data = b"".join(part.SerializeToString() for part in parts)
    whole = pb.ModelInferRequest.FromString(data)
    received = read_infer_request(data)
    assert _without_raw(received.message) == _without_raw(whole)
    assert [bytes(view) for view in received.raw] == list(whole.raw_input_contents)
    assert all(view.obj is data for view in received.raw)  # views, not copies


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_bytes_that_are_no_message_fail_as_protobuf_fails(prefix, tail):
    """Arbitrary bytes (after a valid prefix or not): the deserializer answers what
    protobuf answers, the same message or the same DecodeError."""
    data = prefix + tail
    try:
        whole = pb.ModelInferRequest.FromString(data)
    except DecodeError:
        with pytest.raises(DecodeError):
            read_infer_request(data)
        return
    received = read_infer_request(data)
    assert _without_raw(received.message) == _without_raw(whole)
    assert [bytes(view) for view in received.raw] == list(whole.raw_input_contents)


@pytest.mark.parametrize(
    "data",
    [
        b"\xba\x80\x80\x80\x80\x00\x01x",  # a raw content's tag in six bytes
        b"\x3a\x81\x80\x80\x80\x80\x00x",  # its length in six bytes
        b"\xba\x80\x80\x80\x10\x01x",  # a tag over 32 bits
    ],
)
def test_tags_and_lengths_past_protobufs_limits_are_protobufs_error(data):
    with pytest.raises(DecodeError):
        pb.ModelInferRequest.FromString(data)
    with pytest.raises(DecodeError):
        read_infer_request(data)


def test_a_request_of_very_many_fields_is_parsed_by_protobuf_whole():
    """Past MAX_FIELDS top-level fields the walk stops and protobuf parses the message:
    the same answer, without a Python object for each field."""
    data = b"\x0a\x01m" + b"\x3a\x00" * (MAX_FIELDS + 1)
    received = read_infer_request(data)
    assert received.message.model_name == "m"
    assert list(received.raw) == [b""] * (MAX_FIELDS + 1)
    assert not isinstance(received.raw, list)  # protobuf's own field, read lazily


def test_a_truncated_raw_content_is_protobufs_error():
    message = pb.ModelInferRequest(model_name="mlp", raw_input_contents=[b"x" * 1000])
    data = message.SerializeToString()
    with pytest.raises(DecodeError):
        pb.ModelInferRequest.FromString(data[:-1])
    with pytest.raises(DecodeError):
        read_infer_request(data[:-1])


def test_a_message_parsed_whole_keeps_its_raw_contents():
    message = pb.ModelInferRequest(model_name="mlp", id="7", raw_input_contents=[b"ab", b"c"])
    received = InferRequest.of(message)
    assert received.message.model_name == "mlp" and received.message.id == "7"
    assert list(received.raw) == [b"ab", b"c"]
