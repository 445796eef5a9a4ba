# berth_library(NAME x SRCS a.cc b.cc DEPS berth::base ...)
#   -> static library target berth_x, alias berth::x. Include root is the repository root, so
#      sources include "berth/x/a.h". DEPS are PUBLIC: a module's headers may use its deps' types.
function(berth_library)
  cmake_parse_arguments(ARG "TESTONLY" "NAME" "SRCS;DEPS" ${ARGN})
  set(target berth_${ARG_NAME})
  add_library(${target} STATIC ${ARG_SRCS})
  add_library(berth::${ARG_NAME} ALIAS ${target})
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(${target} PUBLIC ${ARG_DEPS})
  target_compile_options(${target} PRIVATE ${BERTH_WARNINGS})
endfunction()

# berth_test(NAME x_test SRCS x_test.cc DEPS berth::x [LABELS integration])
#   -> gtest executable berth_x_test, each TEST registered with ctest through gtest_discover_tests.
function(berth_test)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT BERTH_BUILD_TESTS)
    return()
  endif()
  set(target berth_${ARG_NAME})
  add_executable(${target} ${ARG_SRCS})
  target_link_libraries(${target} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  target_compile_options(${target} PRIVATE ${BERTH_WARNINGS})
  set(labels unit)
  if(ARG_LABELS)
    set(labels ${ARG_LABELS})
  endif()
  gtest_discover_tests(${target}
    TEST_PREFIX "${ARG_NAME}."
    PROPERTIES LABELS "${labels}" TIMEOUT 300
    DISCOVERY_TIMEOUT 60)
endfunction()
