# ublkgw_layer(NAME SOURCES ... [DEPS ...])
#
# Declares the static library for one layer of gateway/ (gateway/NAME/).
# Its headers are included as "NAME/file.h". The include path a target gets
# is a per-layer root under the build tree that holds only gateway/NAME, so a
# layer sees the headers of exactly the layers it links (DEPS) and a
# forbidden include (nbd/ including ublk/, say) fails to compile.
function(ublkgw_layer name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  set(root "${CMAKE_BINARY_DIR}/include_roots/${name}")
  file(MAKE_DIRECTORY "${root}")
  file(CREATE_LINK "${CMAKE_SOURCE_DIR}/gateway/${name}" "${root}/${name}" SYMBOLIC)
  add_library(ublkgw_${name} STATIC ${ARG_SOURCES})
  target_include_directories(ublkgw_${name} PUBLIC "${root}")
  target_link_libraries(ublkgw_${name} PUBLIC ${ARG_DEPS} PRIVATE ublkgw_flags)
endfunction()
