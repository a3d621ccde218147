"""Wire formats: Open Inference Protocol (V2) and TensorFlow Serving REST. No FastAPI."""
