# berth_library(NAME x [TESTONLY] SRCS a.cc b.cc DEPS berth::base ...)
#   -> static library target berth_x, alias berth::x. Include root is the repository root, so
#      sources include "berth/x/a.h". DEPS are PUBLIC: a module's headers may use its deps' types.
#   TESTONLY marks tooling for tests, the demo and benchmarks (testing/, tools/imagegen): it is
#   not built without BERTH_BUILD_TESTS, and berth_check_product() refuses a product target that
#   links it.
function(berth_library)
  cmake_parse_arguments(ARG "TESTONLY" "NAME" "SRCS;DEPS" ${ARGN})
  if(ARG_TESTONLY AND NOT BERTH_BUILD_TESTS)
    return()
  endif()
  set(target berth_${ARG_NAME})
  add_library(${target} STATIC ${ARG_SRCS})
  add_library(berth::${ARG_NAME} ALIAS ${target})
  if(ARG_TESTONLY)
    set_target_properties(${target} PROPERTIES BERTH_TESTONLY ON)
  else()
    set_property(GLOBAL APPEND PROPERTY BERTH_PRODUCT_LIBRARIES ${target})
  endif()
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(${target} PUBLIC ${ARG_DEPS})
  target_compile_options(${target} PRIVATE ${BERTH_WARNINGS})
  berth_fuzz_instrumentation(${ARG_NAME})
  berth_precompile_headers(${target} ${ARG_SRCS} DEPS ${ARG_DEPS})
endfunction()

# berth_fuzz_instrumentation(name)
#   With BERTH_FUZZ, compiles the library berth_<name> with libFuzzer's coverage instrumentation
#   when it is one of BERTH_FUZZED_LIBRARIES (CMakeLists.txt): the code a fuzz target explores.
#   Tests, tools and the other modules are never instrumented.
function(berth_fuzz_instrumentation name)
  if(BERTH_FUZZ AND name IN_LIST BERTH_FUZZED_LIBRARIES)
    target_compile_options(berth_${name} PRIVATE -fsanitize=fuzzer-no-link)
  endif()
endfunction()

# berth_test(NAME x_test SRCS x_test.cc DEPS berth::x [LABELS need...] [COST seconds]
#            [TIMEOUT seconds])
#   -> gtest executable berth_x_test, each TEST registered with ctest through gtest_discover_tests.
#   LABELS say what the executable's tests need from the machine; every test of it gets them all:
#     (none)    -> label `unit`: needs nothing. No root, no other process, no network, not even
#                  loopback. scripts/test.sh runs `ctest -L unit` as an unprivileged user in a
#                  network namespace without loopback, so a unit test that needs more fails there.
#                  A test that needs root may stay unit only if it GTEST_SKIPs with a reason.
#     loopback  -> servers on 127.0.0.1 in the test process (HttpServer, FaultProxy, TokenServer).
#     registry  -> starts Debian's docker-registry (testing/test_registry.h); list process and
#                  loopback too.
#     root      -> mounts, chown, device nodes, xattrs outside user.*.
#     process   -> spawns programs: berthd, berth, docker-registry, umoci, crun or others.
#     integration -> also on the end-to-end suites (test/integration, test/hostile,
#                  imagegen_registry_test), for `ctest -L integration`.
#   Find a new executable's needs by running it as test.sh runs unit tests (as nobody, in
#   `unshare -n`), and with the network to see what needs root. Labels are applied by a ctest
#   include file written at configure time, so a change needs only a cmake run.
#   COST (ctest's COST property, on every test of the executable): about how many seconds its
#   longest test runs. ctest -j starts the costliest tests first; without it, a build directory
#   with no timings yet (CI's fresh clone) starts a long test whenever its turn comes, maybe last.
#   TIMEOUT: seconds each test may take (default 300), three times that in the sanitizer build.
function(berth_test)
  cmake_parse_arguments(ARG "" "NAME;COST;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT BERTH_BUILD_TESTS)
    return()
  endif()
  set(target berth_${ARG_NAME})
  add_executable(${target} ${ARG_SRCS})
  target_link_libraries(${target} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  target_compile_options(${target} PRIVATE ${BERTH_WARNINGS})
  if(BERTH_SANITIZE OR BERTH_CI_BUILD)
    # The test's own code at -O0 where a build is made to run the suite once: it is not what the
    # suite measures (the product libraries it links keep their optimization), and ASan and UBSan
    # check it no less. Measured on one unity source: clang, base_test, 21 CPU-s at -O1, 9 at
    # -O0; g++, registry_test, 16 at -O2, 8 at -O0. g++'s flow warnings (-Wmaybe-uninitialized)
    # need optimization, so development builds (-O2) still give them on test code.
    target_compile_options(${target} PRIVATE -O0)
  endif()
  berth_precompile_headers(${target} ${ARG_SRCS} DEPS ${ARG_DEPS} GTest::gmock)
  berth_sanitizer_options(${target})
  # ASan+UBSan run code 2-3x slower; the sanitizer build gives each test three times as long.
  set(timeout 300)
  if(ARG_TIMEOUT)
    set(timeout ${ARG_TIMEOUT})
  endif()
  if(BERTH_SANITIZE)
    math(EXPR timeout "${timeout} * 3")
  endif()
  set(labels unit)
  if(ARG_LABELS)
    set(labels ${ARG_LABELS})
    foreach(label ${labels})
      if(NOT label MATCHES "^(loopback|registry|root|process|integration)$")
        message(FATAL_ERROR "berth_test(${ARG_NAME}): unknown label '${label}' (a test without "
          "labels is unit; others are loopback, registry, root, process, integration)")
      endif()
    endforeach()
  endif()
  gtest_discover_tests(${target}
    TEST_PREFIX "${ARG_NAME}."
    PROPERTIES TIMEOUT ${timeout}
    DISCOVERY_TIMEOUT 60)
  # The labels and COST go in a ctest include file of their own, read after the discovered test
  # list (${target}_TESTS): gtest_discover_tests writes a PROPERTIES list unquoted, so every
  # label after the first would be lost (ctest -L root matched nothing).
  set(properties "LABELS \"${labels}\"")
  if(ARG_COST)
    string(APPEND properties " COST ${ARG_COST}")
  endif()
  set(labels_file ${CMAKE_CURRENT_BINARY_DIR}/${target}_labels.cmake)
  file(WRITE ${labels_file}
    "foreach(test IN LISTS ${target}_TESTS)\n"
    "  set_tests_properties(\"\${test}\" PROPERTIES ${properties})\n"
    "endforeach()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${labels_file})
endfunction()

# berth_sanitizer_options(target...)
#   In the sanitizer build, links the runtime options (cmake/sanitizers/sanitizer_options.cc:
#   LSan suppressions, UBSan stack traces) into each executable; a no-op otherwise. berth_test
#   does it for tests; executables made with add_executable call it themselves.
function(berth_sanitizer_options)
  if(NOT BERTH_SANITIZE)
    return()
  endif()
  foreach(target ${ARGN})
    if(TARGET ${target})
      target_sources(${target} PRIVATE $<TARGET_OBJECTS:berth_sanitizer_options>)
    endif()
  endforeach()
endfunction()

# berth_generated_code(target...)
#   In the sanitizer build, compiles these targets (protoc's generated code) without ASan and
#   UBSan, as the rest of protobuf and gRPC (Debian's libraries) is: a finding there would be
#   protoc's, and the instrumentation tripled their compile time (clang, runtime/v1/api.pb.cc:
#   19 CPU-s, 6 without). libFuzzer's coverage stays, so a fuzzer still sees its way through the
#   message parsers. A no-op in other builds; names that are not targets are skipped.
function(berth_generated_code)
  if(NOT BERTH_SANITIZE)
    return()
  endif()
  foreach(target ${ARGN})
    if(TARGET ${target})
      target_compile_options(${target} PRIVATE -fno-sanitize=address,undefined)
    endif()
  endforeach()
endfunction()

# berth_precompile_headers(target src... DEPS dep...)
#   With BERTH_PRECOMPILED_HEADERS (default: on with clang, off with g++; see CMakeLists.txt),
#   precompiles for `target` the heavy third-party headers its sources include: the standard
#   library, nlohmann/json, fmt and spdlog always (every module links berth::base), gmock/gtest
#   for tests, gRPC and toml++ when `dep` names them. With clang, parsing these once per target
#   instead of once per source is what a clean build saves most (json, gmock, gRPC and toml++
#   each cost ~2 CPU-seconds per source to parse). Targets with fewer than three sources gain
#   nothing and are left alone, and so are unity builds (BERTH_CI_BUILD): with one or two
#   objects per target the PCH costs more than it saves (clang, base_test: 5 CPU-s to build it,
#   3 saved). The headers are force-included, so a missing #include can hide
#   in that build; the g++ build (no PCH) still catches it.
function(berth_precompile_headers target)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  list(LENGTH ARG_UNPARSED_ARGUMENTS source_count)
  get_target_property(unity ${target} UNITY_BUILD)
  if(NOT BERTH_PRECOMPILED_HEADERS OR source_count LESS 3 OR unity)
    return()
  endif()
  set(headers <algorithm> <chrono> <filesystem> <functional> <map> <memory> <mutex> <optional>
    <string> <string_view> <vector> <nlohmann/json.hpp> <fmt/format.h> <spdlog/spdlog.h>)
  if("GTest::gmock" IN_LIST ARG_DEPS)
    list(APPEND headers <gmock/gmock.h> <gtest/gtest.h>)
  endif()
  if("gRPC::grpc++" IN_LIST ARG_DEPS OR "berth::cri" IN_LIST ARG_DEPS)
    list(APPEND headers <grpcpp/grpcpp.h>)
  endif()
  if("tomlplusplus::tomlplusplus" IN_LIST ARG_DEPS OR "berth::config" IN_LIST ARG_DEPS)
    list(APPEND headers <toml++/toml.h>)
  endif()
  target_precompile_headers(${target} PRIVATE ${headers})
endfunction()

# berth_check_product(target...)
#   Fails the configure step when a product library (every berth_library without TESTONLY) or
#   one of the named executables links a TESTONLY library directly. Checking every product
#   library's direct links covers the transitive ones. Call it once, after every target exists.
function(berth_check_product)
  get_property(product GLOBAL PROPERTY BERTH_PRODUCT_LIBRARIES)
  foreach(target ${product} ${ARGN})
    get_target_property(links ${target} LINK_LIBRARIES)
    if(NOT links)
      continue()
    endif()
    foreach(link ${links})
      if(NOT TARGET ${link})
        continue()
      endif()
      get_target_property(aliased ${link} ALIASED_TARGET)
      if(aliased)
        set(link ${aliased})
      endif()
      get_target_property(testonly ${link} BERTH_TESTONLY)
      if(testonly)
        message(FATAL_ERROR "${target} links the test-only library ${link}")
      endif()
    endforeach()
  endforeach()
endfunction()
