# cmake -DPROGRAM=<path> -DARGS="<arguments>" -DSTATUS=<n> -DEXPECT=<regex> -P expect_output.cmake
# Runs PROGRAM with ARGS (split as a shell would) and fails unless it exits with STATUS and its
# output, stdout and stderr together, matches EXPECT.
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${PROGRAM} ${args} RESULT_VARIABLE status OUTPUT_VARIABLE output
                ERROR_VARIABLE output)
if(NOT status STREQUAL STATUS)
  message(FATAL_ERROR
          "${PROGRAM} ${ARGS}: exit status ${status}, expected ${STATUS}; output:\n${output}")
endif()
if(NOT output MATCHES "${EXPECT}")
  message(FATAL_ERROR "${PROGRAM} ${ARGS}: output does not match '${EXPECT}':\n${output}")
endif()
