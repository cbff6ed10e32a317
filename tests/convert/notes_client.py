"""The course notes' TF Serving client, unchanged in substance: TensorFlow's own
``tf.make_tensor_proto`` and the ``tensorflow_serving.apis`` stubs, reading
``outputs['dense_7'].float_val``.

Run as a script in its own process (TensorFlow and ``clothing.proto`` register
the same proto file names):

    python notes_client.py HOST:PORT MODEL ROWS.npy   # JSON list of predictions out
"""

from __future__ import annotations

import json
import sys

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def main(host: str, model: str, rows_path: str) -> None:
    X = np.load(rows_path)
    channel = grpc.insecure_channel(host)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    pb_request = predict_pb2.PredictRequest()
    pb_request.model_spec.name = model
    pb_request.model_spec.signature_name = "serving_default"
    pb_request.inputs["input_8"].CopyFrom(tf.make_tensor_proto(X, shape=X.shape))
    pb_response = stub.Predict(pb_request, timeout=20.0)
    preds = pb_response.outputs["dense_7"].float_val
    print(json.dumps(list(preds)))
    channel.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
