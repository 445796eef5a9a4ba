// Linked into every executable of the sanitizer build (BERTH_SANITIZE): the runtime options the
// tests, the binaries they spawn and the fuzz targets all run with, so that a plain `ctest` in
// the sanitizer build directory behaves exactly as CI does. An environment variable
// (ASAN_OPTIONS, UBSAN_OPTIONS, LSAN_OPTIONS) still overrides any option named here.

// NOLINTBEGIN(readability-identifier-naming): the sanitizer runtimes look these names up.
extern "C" {

const char* __asan_default_options() {
  return "detect_leaks=1:detect_stack_use_after_return=0:strict_string_checks=1:"
         "check_initialization_order=1";
}

const char* __ubsan_default_options() { return "print_stacktrace=1:halt_on_error=1"; }

// Only third-party leaks are suppressed, each for a reason written beside it in the file.
const char* __lsan_default_options() {
  return "suppressions=" BERTH_LSAN_SUPPRESSIONS ":print_suppressions=0";
}

}  // extern "C"
// NOLINTEND(readability-identifier-naming)
