"""Pure business rules: plain values in, plain values out. No Faust, Kafka or web imports here."""
