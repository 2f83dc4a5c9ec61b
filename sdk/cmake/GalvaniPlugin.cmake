# galvani_add_plugin(<target> SOURCES <files...> [LIBRARIES <targets...>] [OUTPUT_DIRECTORY <dir>] [NO_INSTALL])
#
# Builds a Galvani plugin: a shared library loaded by the host with Boost.DLL. In-tree plugins use exactly
# this function, as an out-of-tree author does after find_package(Galvani).
include_guard(GLOBAL)

function(galvani_add_plugin target)
  cmake_parse_arguments(ARG "NO_INSTALL" "OUTPUT_DIRECTORY" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "galvani_add_plugin(${target}): SOURCES is required")
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE galvani::sdk ${ARG_LIBRARIES})
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    CXX_STANDARD 20
    CXX_STANDARD_REQUIRED ON
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  elseif(DEFINED GALVANI_PLUGIN_BUILD_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${GALVANI_PLUGIN_BUILD_DIR})
  endif()
  # Undefined symbols are errors at link time, not at load time.
  target_link_options(${target} PRIVATE -Wl,--no-undefined)
  if(TARGET galvani_sdk)
    # In-tree: reuse the SDK's precompiled torch header.
    target_precompile_headers(${target} REUSE_FROM galvani_plugin_pch)
  endif()
  if(NOT ARG_NO_INSTALL AND DEFINED GALVANI_PLUGIN_INSTALL_DIR)
    install(TARGETS ${target} LIBRARY DESTINATION ${GALVANI_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
