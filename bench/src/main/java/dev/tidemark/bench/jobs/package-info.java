/**
 * Harnesses for backup jobs and fleecing: copy rates of full and incremental backups and the guest write rate
 * with a fleecing view active.
 */
package dev.tidemark.bench.jobs;
