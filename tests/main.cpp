// The one Catch2 main for palitra_tests. tests/alloc has its own main because
// it replaces the global allocator to count calls.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
