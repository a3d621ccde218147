"""ModelInfer's answers written in the wire format directly, against protobuf's own
serialization of the same message: the same bytes, whatever the names, datatypes, shapes
(negative and multi-byte dimensions too) and output sizes, and the same inside
ModelStreamInfer's answer."""

from hypothesis import given, settings
from hypothesis import strategies as st

from layerserve.service.grpc.generated import grpc_service_pb2 as pb
from layerserve.service.grpc.infer_response import (
    EncodedResponse,
    infer_response,
    serialize,
    stream_infer_response,
)

texts = st.text(max_size=20)
outputs = st.lists(
    st.tuples(
        texts,
        st.sampled_from(["FP32", "INT64", "BYTES", "BOOL", ""]),
        st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(0, 300), max_size=5),
        st.binary(max_size=300)
        | st.integers(0, 70_000).map(lambda n: bytes(n % 256 for _ in range(n))),
    ),
    max_size=4,
)


def protobuf_message(
    model_name: str, version: str, request_id: str, answers: list
) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(model_name=model_name, model_version=version, id=request_id)
    for name, datatype, shape, raw in answers:
        message.outputs.add(name=name, datatype=datatype, shape=shape)
        message.raw_output_contents.append(raw)
    return message


@settings(max_examples=200, deadline=None)
@given(model_name=texts, version=texts, request_id=texts, answers=outputs)
def test_an_answer_is_the_bytes_protobuf_writes(model_name, version, request_id, answers):
    encoded = infer_response(model_name, version, request_id, answers).data
    expected = protobuf_message(model_name, version, request_id, answers)
    assert encoded == expected.SerializeToString()
    assert pb.ModelInferResponse.FromString(encoded) == expected
    wrapped = stream_infer_response(EncodedResponse(encoded)).data
    assert wrapped == pb.ModelStreamInferResponse(infer_response=expected).SerializeToString()


def test_the_serializer_passes_an_encoded_answer_on_and_serializes_a_message():
    encoded = infer_response("mlp", "1", "a", [("y", "FP32", (2, 3), b"\x00" * 24)])
    assert type(serialize(encoded)) is bytes  # grpcio takes nothing else
    assert serialize(encoded) is encoded.data
    failed = pb.ModelStreamInferResponse(error_message="no", infer_response=pb.ModelInferResponse())
    assert serialize(failed) == failed.SerializeToString()
