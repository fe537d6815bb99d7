"""The upstream side of the network: omnirelay's HTTP/1.1 client and the executor running providers' requests."""
