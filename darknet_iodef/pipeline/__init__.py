"""The pipeline: sensor, aggregator and reporter stages wired over a bus (in memory or Kafka)."""
