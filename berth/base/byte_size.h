// File: berth/base/byte_size.h
//
// Byte counts for people: "512 B", "7.9 MiB", "1.2 GiB" (binary units, one decimal), as error
// messages about disk space print them.
#pragma once

#include <cstdint>
#include <string>

namespace berth {

std::string FormatByteSize(uint64_t bytes);

}  // namespace berth
