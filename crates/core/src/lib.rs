//! rohimaya-core
