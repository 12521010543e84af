#ifndef KUBEBRIDGE_CFUZZ_H
#define KUBEBRIDGE_CFUZZ_H
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's driver (compiler-rt FuzzerDriver.cpp), linked by -sanitize=fuzzer. SwiftPM
 * gives every executable its own entry point (<Module>_main, aliased to main), so the
 * harnesses call the driver from main.swift instead of relying on libFuzzer's main(). */
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
