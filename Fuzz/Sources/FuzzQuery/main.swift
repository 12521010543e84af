import FuzzSupport

runFuzzer(fuzzQuery)
