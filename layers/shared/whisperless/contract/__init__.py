"""The contract (CONTRACT.md): request options, result documents, their renderings and the
names of things in the bucket. Light on purpose: the API function imports it from its zip layer
(no numpy, torch or AWS SDK here)."""
