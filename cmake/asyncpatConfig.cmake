# asyncpatConfig.cmake -- find_package(asyncpat CONFIG) loads this; it defines
# the target asyncpat::asyncpat. Installed unchanged by `cmake --install`,
# `make install` and `meson install`.
include(CMakeFindDependencyMacro)
find_dependency(Threads)
include("${CMAKE_CURRENT_LIST_DIR}/asyncpatTargets.cmake")

# The target asks for c_std_11 and cxx_std_17; CMake stops at a compile
# feature of a language the finding directory never enabled ("No known
# features for CXX compiler"), so keep only the enabled languages' ones.
get_target_property(_ap_features asyncpat::asyncpat INTERFACE_COMPILE_FEATURES)
if(_ap_features)
  if(NOT DEFINED CMAKE_C_COMPILE_FEATURES)
    list(REMOVE_ITEM _ap_features c_std_11)
  endif()
  if(NOT DEFINED CMAKE_CXX_COMPILE_FEATURES)
    list(REMOVE_ITEM _ap_features cxx_std_17)
  endif()
  set_property(TARGET asyncpat::asyncpat PROPERTY INTERFACE_COMPILE_FEATURES "${_ap_features}")
endif()
unset(_ap_features)
