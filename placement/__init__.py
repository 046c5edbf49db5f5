"""DCM placement service: policy-evaluated, durable placement of resources."""
