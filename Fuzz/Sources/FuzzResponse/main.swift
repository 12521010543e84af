import FuzzSupport

runFuzzer(fuzzResponse)
