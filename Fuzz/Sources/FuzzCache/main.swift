import FuzzSupport

runFuzzer(fuzzCache)
