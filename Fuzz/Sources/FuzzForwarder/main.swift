import FuzzSupport

runFuzzer(fuzzForwarder)
