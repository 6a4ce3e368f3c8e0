"""Servability checks: TF Serving's loader and request handlers, and visionpipe's serving contract.

* probe.py: the separate process (TensorFlow and tensorflow-serving-api only);
* serving_requests.py: Predict/Classify requests from test-split examples;
* checks.py: runs the probe and turns its answers into a verdict.

Used by the ServingGate component (components/serving_gate.py) and by
`visionpipe serve-check`.
"""
