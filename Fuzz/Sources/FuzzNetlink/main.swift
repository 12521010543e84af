import FuzzSupport

runFuzzer(fuzzNetlink)
