/* datatool: `dssgd data`, the command-line tools for data files, run in one
 * process (no MPI):
 *   dssgd data convert  the IDX training and test sets of a directory into
 *                       one HDF5 data file in the h5data layout
 *                       (include/h5data.h), pixels stored as bytes;
 *   dssgd data split    a data file's /train into one file per site, site p
 *                       holding exactly the shard that `dssgd train` with
 *                       the same --partition, --participants (= --sites),
 *                       --shard-size, --alpha and --seed draws for
 *                       participant p, in the shard's order.
 * Every file written is reloaded and compared with what it must hold, bit
 * for bit, before the tool reports it written. */
#ifndef DSSGD_DATATOOL_H
#define DSSGD_DATATOOL_H

/* Runs `dssgd data ...`; argv[0] is "data". Prints its results on stdout,
 * usage on stdout for --help, refusals on stderr as "dssgd: <message>".
 * Returns the exit status, as `dssgd train` does: 0 done (or --help); 2 a
 * usage error (unknown option or command, missing or malformed value, bad
 * output pattern); 1 a failure (a file that cannot be read or written, an
 * output that names an input, a partition the data cannot give). */
int datatool_main(int argc, char **argv);

#endif
