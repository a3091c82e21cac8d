// tests/main.cpp — the one doctest binary: every tests/test_*.cpp links into it.
// Run from the repository root (fixtures are found as tests/fixtures/...).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
