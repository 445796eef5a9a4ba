// File: berth/base/c_handle.h
//
// Owning smart pointers for C library handles: std::unique_ptr with a stateless deleter, so a
// handle costs one pointer and is freed on every path.
//
//   using UniqueCurl = UniqueHandle<CURL, curl_easy_cleanup>;
//   UniqueCurl easy(curl_easy_init());
#pragma once

#include <memory>

namespace berth {

template <auto Free>
struct CDeleter {
  template <typename T>
  void operator()(T* handle) const {
    if (handle != nullptr) Free(handle);
  }
};

template <typename T, auto Free>
using UniqueHandle = std::unique_ptr<T, CDeleter<Free>>;

}  // namespace berth
