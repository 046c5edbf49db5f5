"""What the service tells its operators: the request context carried by log lines
(`context`), the Prometheus metrics (`metrics`) and the log format (`logs`)."""
