#include "berth/base/byte_size.h"

#include <gtest/gtest.h>

namespace berth {
namespace {

TEST(FormatByteSizeTest, BinaryUnitsWithOneDecimal) {
  EXPECT_EQ(FormatByteSize(0), "0 B");
  EXPECT_EQ(FormatByteSize(1023), "1023 B");
  EXPECT_EQ(FormatByteSize(1024), "1.0 KiB");
  EXPECT_EQ(FormatByteSize(uint64_t{8} << 20), "8.0 MiB");
  EXPECT_EQ(FormatByteSize((uint64_t{79} << 20) / 10), "7.9 MiB");
  EXPECT_EQ(FormatByteSize(uint64_t{3} << 40), "3.0 TiB");
}

}  // namespace
}  // namespace berth
